"""Split panel: train/val/test counts, target ratios, re-split, the locked test set, the
group key (keep a folder or a lot/serial number in one split) and the near-duplicate check.

The near-duplicate check (``core.near_duplicates``) runs in a worker thread; it reports how
many groups of near-identical images span splits (and how many touch the test set), can show
them in the gallery, and moves each group into one split. A locked test set is never changed:
groups touching it are left as they are, with a message saying so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from densestudio.core.constants import SPLITS
from densestudio.core.errors import DenseStudioError
from densestudio.core.progress import CancelToken, EventCallback
from densestudio.ui.controller import ProjectController
from densestudio.ui.workers import JobRunner, Worker

if TYPE_CHECKING:
    from densestudio.core.near_duplicates import NearDuplicateGroup
    from densestudio.core.store import Project

GROUP_CHOICES = (("", "Near-duplicates only"), ("folder", "Parent folder"),
                 ("regex", "Regex on the file name"))
ERROR_STYLE = "color: #c62828;"


def near_duplicates_job(
    project: Project, *, on_event: EventCallback, cancel: CancelToken
) -> list[NearDuplicateGroup]:
    """Groups of near-identical labeled images in different splits (frozen dataclasses)."""
    from densestudio.core.near_duplicates import find_cross_split_duplicates, refresh_groups

    cancel.raise_if_cancelled()
    refresh_groups(project)  # what the Train tab, Review and the report warn about
    return find_cross_split_duplicates(project)


def group_by_problem(group_by: str) -> str | None:
    """Why a group setting cannot be used (None = fine)."""
    from densestudio.core.splits import group_key_function

    if group_by == "regex:":
        return "Enter a pattern, e.g. (lot\\d+) to keep each lot in one split."
    try:
        group_key_function(group_by)
    except DenseStudioError as exc:
        return str(exc)
    return None


class SplitPanel(QWidget):
    showSplitRequested = Signal(str)  # "train" | "val" | "test" | "none"
    showImagesRequested = Signal(object, str)  # image ids, a title for the status bar
    duplicatesChecked = Signal(object)  # list[NearDuplicateGroup]

    def __init__(self, parent: QWidget | None = None, jobs: JobRunner | None = None) -> None:
        super().__init__(parent)
        self.controller: ProjectController | None = None
        self.jobs = jobs or JobRunner(lambda _title, _message: None, self)

        self.table = QTableWidget(4, 2, self)
        self.table.setHorizontalHeaderLabels(["Images", "Share"])
        self.table.setVerticalHeaderLabels(["Train", "Val", "Test", "No split"])
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QTableWidget.SelectionMode.NoSelection)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.setSizeAdjustPolicy(QTableWidget.SizeAdjustPolicy.AdjustToContents)
        self.table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self._fit_table()
        self.table.setToolTip("Double-click a row to show its images in the gallery.")
        self.table.cellDoubleClicked.connect(
            lambda row, _col: self.showSplitRequested.emit([*SPLITS, "none"][row])
        )

        self.spins: list[QSpinBox] = []
        ratios = QHBoxLayout()
        for name in SPLITS:
            spin = QSpinBox(self)
            spin.setRange(0, 100)
            spin.setSuffix(" %")
            spin.setToolTip(f"Target share of each class in the {name} split")
            spin.valueChanged.connect(self._update_sum)
            self.spins.append(spin)
            ratios.addWidget(spin)
        self.sum_label = QLabel("", self)

        self.resplit_button = QPushButton("Re-split…", self)
        self.resplit_button.setToolTip(
            "Assign every labeled image to train/val/test again, stratified by class, "
            "with these ratios (a locked test set stays as it is)."
        )
        self.resplit_button.clicked.connect(self.resplit)
        self.lock_box = QCheckBox("Lock test set", self)
        self.lock_box.setToolTip(
            "A locked (\"golden\") test set never changes: no image enters or leaves it, "
            "not even on a re-split, so results stay comparable across runs."
        )
        self.lock_box.toggled.connect(self._on_lock)
        self.info = QLabel("", self)
        self.info.setWordWrap(True)
        self.info.setStyleSheet("color: palette(placeholder-text);")

        # Group key: keep a folder (or a lot / serial number in the name) in one split.
        self.group_combo = QComboBox(self)
        for key, text in GROUP_CHOICES:
            self.group_combo.addItem(text, key)
        self.group_combo.setToolTip(
            "Images of one group always share a split, so near-identical shots of one part "
            "never end up in both train and test.")
        self.regex_edit = QLineEdit(self)
        self.regex_edit.setPlaceholderText(r"e.g. (lot\d+) — first group = key")
        self.regex_edit.setToolTip(
            "A regular expression searched in each file name; its first group (or the whole "
            "match) is the group key. Names without a match are their own group.")
        self.group_button = QPushButton("Apply && re-split", self)
        self.group_message = QLabel("", self)
        self.group_message.setWordWrap(True)
        self.group_combo.currentIndexChanged.connect(self._validate_group)
        self.regex_edit.textChanged.connect(self._validate_group)
        self.group_button.clicked.connect(self.apply_group_by)

        # Near-duplicates across splits.
        self.dup_button = QPushButton("Check near-duplicates", self)
        self.dup_button.setToolTip(
            "Find near-identical images (re-saved, re-shot, slightly shifted) that sit in "
            "different splits: they make validation and test accuracy look better than it is.")
        self.dup_label = QLabel("", self)
        self.dup_label.setWordWrap(True)
        self.dup_show = QPushButton("Show them", self)
        self.dup_move = QPushButton("Move them together", self)
        self.dup_move.setToolTip("Put each group in one split (the one most of it is in)")
        self.dup_button.clicked.connect(self.check_duplicates)
        self.dup_show.clicked.connect(self.show_duplicates)
        self.dup_move.clicked.connect(self.move_duplicates)
        self.groups: list = []

        form = QFormLayout()
        form.addRow("Train / val / test", ratios)
        form.addRow("", self.sum_label)
        buttons = QHBoxLayout()
        buttons.addWidget(self.resplit_button)
        buttons.addWidget(self.lock_box)
        buttons.addStretch(1)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.table)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.info)

        group_form = QFormLayout()
        group_form.addRow("Keep together", self.group_combo)
        group_form.addRow("Pattern", self.regex_edit)
        layout.addLayout(group_form)
        group_row = QHBoxLayout()
        group_row.addWidget(self.group_button)
        group_row.addStretch(1)
        layout.addLayout(group_row)
        layout.addWidget(self.group_message)

        dup_row = QHBoxLayout()
        dup_row.addWidget(self.dup_button)
        dup_row.addStretch(1)
        layout.addLayout(dup_row)
        layout.addWidget(self.dup_label)
        dup_actions = QHBoxLayout()
        dup_actions.addWidget(self.dup_show)
        dup_actions.addWidget(self.dup_move)
        dup_actions.addStretch(1)
        layout.addLayout(dup_actions)
        layout.addStretch(1)
        self._updating = False
        self.refresh()

    def _fit_table(self) -> None:
        """Exactly as tall as its four rows (measured after the style sized them: a height
        computed before that cut the last row, "No split")."""
        self.table.resizeRowsToContents()
        height = (self.table.verticalHeader().length()
                  + self.table.horizontalHeader().sizeHint().height()
                  + 2 * self.table.frameWidth() + 2)
        self.table.setFixedHeight(height)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self._fit_table()

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() in (event.Type.FontChange, event.Type.StyleChange):
            self._fit_table()

    def set_controller(self, controller: ProjectController | None) -> None:
        if self.worker is not None:
            self.worker.cancel()
        self.controller = controller
        self.groups = []
        self.dup_label.setText("")
        if controller is not None:
            controller.countsChanged.connect(self.refresh)
            controller.splitsChanged.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        c = self.controller
        self.setEnabled(c is not None)
        self._updating = True
        try:
            if c is None:
                for row in range(4):
                    for col in range(2):
                        self.table.setItem(row, col, QTableWidgetItem(""))
                self.info.setText("")
                self._update_dup_buttons()
                return
            counts = c.counts()
            labeled = counts.total - counts.count(None)
            values = [counts.count(..., s) for s in SPLITS]
            values.append(counts.count(..., None) - counts.count(None, None))
            for row, n in enumerate(values):
                share = f"{n / labeled:.0%}" if labeled else "–"
                for col, text in enumerate((f"{n:,}", share)):
                    item = QTableWidgetItem(text)
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight
                                          | Qt.AlignmentFlag.AlignVCenter)
                    self.table.setItem(row, col, item)
            settings = c.split_settings()
            for spin, ratio in zip(self.spins, settings.ratios, strict=False):
                spin.setValue(round(ratio * 100))
            self.lock_box.setChecked(settings.test_locked)
            group_by = settings.group_by
            key = "regex" if group_by.startswith("regex:") else group_by
            self.group_combo.setCurrentIndex(max(0, self.group_combo.findData(key)))
            if key == "regex":
                self.regex_edit.setText(group_by[len("regex:"):])
            locked = "The test set is locked. " if settings.test_locked else ""
            self.info.setText(
                f"{locked}Only labeled images get a split; new labels fill the split "
                f"furthest below its target. Seed {settings.seed}."
            )
        finally:
            self._updating = False
            self._update_sum()
            self._validate_group()
            self._update_dup_buttons()

    def ratios(self) -> tuple[float, float, float]:
        values = [s.value() for s in self.spins]
        return tuple(v / 100 for v in values)  # type: ignore[return-value]

    def _update_sum(self) -> None:
        total = sum(s.value() for s in self.spins)
        ok = total == 100
        self.sum_label.setText("" if ok else f"The shares add up to {total} %, not 100 %.")
        self.resplit_button.setEnabled(ok and self.controller is not None)

    def confirm(self, title: str, text: str) -> bool:
        answer = QMessageBox.question(
            self, title, text,
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel,
        )
        return answer == QMessageBox.StandardButton.Yes

    def resplit(self) -> None:
        c = self.controller
        if c is None:
            return
        locked = " The locked test set stays as it is." if self.lock_box.isChecked() else ""
        if not self.confirm(
            "Re-split",
            "Assign every labeled image to train/val/test again with a new random seed?"
            f"{locked} Runs already trained keep the split they used.",
        ):
            return
        c.resplit(self.ratios())

    def _on_lock(self, locked: bool) -> None:
        if not self._updating and self.controller is not None:
            self.controller.lock_test_split(locked)

    # ------------------------------------------------------------ group key
    def group_by(self) -> str:
        key = self.group_combo.currentData() or ""
        return f"regex:{self.regex_edit.text()}" if key == "regex" else key

    def _validate_group(self, *_args: object) -> bool:
        regex = self.group_combo.currentData() == "regex"
        self.regex_edit.setEnabled(regex)
        problem = group_by_problem(self.group_by())
        saved = self.controller.split_settings().group_by if self.controller else ""
        if problem:
            self.group_message.setStyleSheet(ERROR_STYLE)
            self.group_message.setText(problem)
        else:
            self.group_message.setStyleSheet("color: palette(placeholder-text);")
            if self.group_by() == saved:
                self.group_message.setText(
                    "Splits keep these groups together." if saved else
                    "Images are split one by one, except near-identical images and "
                    "names sharing a stem (tile7_light1, tile7_light2): those share a split.")
            else:
                self.group_message.setText("Apply to re-assign the splits with this key.")
        self.group_button.setEnabled(self.controller is not None and problem is None
                                     and self.group_by() != saved)
        return problem is None

    def apply_group_by(self) -> int | None:
        c = self.controller
        if c is None or not self._validate_group():
            return None
        locked = " The locked test set stays as it is." if self.lock_box.isChecked() else ""
        what = dict((k, t) for k, t in GROUP_CHOICES)[self.group_combo.currentData() or ""]
        if not self.confirm(
            "Keep groups together",
            f"Re-assign every labeled image to train/val/test, keeping groups ({what.lower()}) "
            f"in one split?{locked} Runs already trained keep the split they used.",
        ):
            return None
        n = c.set_group_by(self.group_by())
        if n is not None:
            self.group_message.setStyleSheet("color: palette(placeholder-text);")
            self.group_message.setText(f"Re-assigned {n:,} images; groups share a split.")
        return n

    # ------------------------------------------------------------ near-duplicates
    def check_duplicates(self) -> Worker | None:
        if self.controller is None or self.worker is not None:
            return None
        worker = Worker(near_duplicates_job, self.controller.project, parent=self)
        worker.finished.connect(self._on_duplicates)
        worker.failed.connect(lambda msg: self.dup_label.setText(f"Check failed: {msg}"))
        worker.done.connect(lambda: self._on_dup_done(worker))
        self.dup_label.setStyleSheet("")
        self.dup_label.setText("Looking for near-identical images across splits…")
        self.jobs.start(worker, self, error_title=None)
        self._update_dup_buttons()
        return worker

    @property
    def worker(self) -> Worker | None:
        """Its running job: one at a time, held by the app's ``JobRunner``."""
        return self.jobs.job_of(self)

    def _on_dup_done(self, worker: Worker) -> None:
        self._update_dup_buttons()

    def _on_duplicates(self, groups: list) -> None:
        self.groups = list(groups)
        self._describe_groups()
        self._update_dup_buttons()
        self.duplicatesChecked.emit(self.groups)

    def _conflicts(self) -> str:
        """Groups of near-identical (or same-name) images whose labels disagree."""
        from densestudio.core.store import split_leaks

        if self.controller is None:
            return ""
        n = len(split_leaks(self.controller.project)[0].conflicts)
        return (f" Label conflicts: {n:,} group{'s' if n != 1 else ''} of near-identical or "
                "same-name images carry different labels." if n else "")

    def _describe_groups(self, prefix: str = "") -> None:
        groups = self.groups
        conflicts = self._conflicts()
        if not groups:
            self.dup_label.setStyleSheet(ERROR_STYLE if conflicts else "")
            self.dup_label.setText(prefix + "No near-identical images span splits." + conflicts)
            return
        n_test = sum(1 for g in groups if "test" in g.splits)
        images = sum(len(g.image_ids) for g in groups)
        text = (f"{len(groups):,} group{'s' if len(groups) != 1 else ''} of near-identical "
                f"images ({images:,} images) span more than one split; {n_test:,} touch the "
                "test set.")
        if n_test and self.controller is not None and \
                self.controller.split_settings().test_locked:
            text += (" The test set is locked: groups touching it cannot be moved (unlock it "
                     "in this panel to move them too).")
        self.dup_label.setStyleSheet(ERROR_STYLE if n_test or conflicts else "")
        self.dup_label.setText(prefix + text + conflicts)

    def duplicate_ids(self) -> list[int]:
        return [i for g in self.groups for i in g.image_ids]

    def show_duplicates(self) -> None:
        ids = self.duplicate_ids()
        if ids:
            self.showImagesRequested.emit(
                ids, f"{len(self.groups)} groups of near-identical images across splits")

    def move_duplicates(self) -> int | None:
        """Put each group in one split; groups touching a locked test set stay as they are."""
        c = self.controller
        if c is None or not self.groups:
            return None
        locked = c.split_settings().test_locked
        movable = [g for g in self.groups if not (locked and "test" in g.splits)]
        kept = [g for g in self.groups if g not in movable]
        if not movable:
            self.dup_label.setStyleSheet(ERROR_STYLE)
            self.dup_label.setText(
                f"All {len(kept)} group{'s' if len(kept) != 1 else ''} touch the locked test "
                "set, which never changes. Unlock the test set (above) to move them together.")
            return 0
        n = c.move_near_duplicates_together(movable)
        if n is None:
            return None
        self.groups = kept
        note = f"Moved {n:,} image{'s' if n != 1 else ''} so each group shares a split. "
        if kept:
            note += (f"{len(kept)} group{'s' if len(kept) != 1 else ''} touching the locked "
                     "test set stayed as they are; unlock the test set to move them too. ")
            self.dup_label.setStyleSheet(ERROR_STYLE)
            self.dup_label.setText(note)
        else:
            self.dup_label.setStyleSheet("")
            self.dup_label.setText(note + "No near-identical images span splits now.")
        self._update_dup_buttons()
        return n

    def _update_dup_buttons(self) -> None:
        has = self.controller is not None
        busy = self.worker is not None
        self.dup_button.setEnabled(has and not busy)
        self.dup_show.setEnabled(has and bool(self.groups))
        self.dup_move.setEnabled(has and bool(self.groups) and not busy)
