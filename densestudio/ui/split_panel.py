"""Split panel: train/val/test counts, target ratios, re-split and the locked test set."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from densestudio.core.models import SPLITS
from densestudio.ui.controller import ProjectController


class SplitPanel(QWidget):
    showSplitRequested = Signal(str)  # "train" | "val" | "test" | "none"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller: ProjectController | None = None

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
        rows_h = sum(self.table.verticalHeader().sectionSizeHint(r) for r in range(4))
        self.table.setFixedHeight(rows_h + self.table.horizontalHeader().sizeHint().height()
                                  + 2 * self.table.frameWidth() + 2)
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
        layout.addStretch(1)
        self._updating = False
        self.refresh()

    def set_controller(self, controller: ProjectController | None) -> None:
        self.controller = controller
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
                return
            counts = c.counts()
            labeled = counts.total - counts.count(None)
            values = [counts.count(..., s) for s in SPLITS]
            values.append(counts.count(..., None) - counts.count(None, None))
            for row, n in enumerate(values):
                share = f"{n / labeled:.0%}" if labeled else "–"
                for col, text in enumerate((f"{n:,}", share)):
                    item = QTableWidgetItem(text)
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                    self.table.setItem(row, col, item)
            settings = c.split_settings()
            for spin, ratio in zip(self.spins, settings.ratios):
                spin.setValue(round(ratio * 100))
            self.lock_box.setChecked(settings.test_locked)
            locked = "The test set is locked. " if settings.test_locked else ""
            self.info.setText(
                f"{locked}Only labeled images get a split; new labels fill the split "
                f"furthest below its target. Seed {settings.seed}."
            )
        finally:
            self._updating = False
            self._update_sum()

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
