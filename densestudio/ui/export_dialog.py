"""Export a run as one self-describing model file (ONNX by default, TorchScript as an
option), show what the file contains, and "check it": show the parity figures measured when
the file was written (the file run in ONNX Runtime vs the app on every test image), reload
the written file as a user on the production line would, and predict a few of the run's
test images with it.

Export and the check run in worker threads; the dialog stays responsive.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from densestudio.core import runs as core_runs
from densestudio.core.constants import MODEL_FORMAT_BY_SUFFIX
from densestudio.ml import summary
from densestudio.ui.job_progress import JobProgress
from densestudio.ui.jobs import CheckRow, ExportResult, check_export_job, export_job
from densestudio.ui.runs_panel import run_title
from densestudio.ui.signoff_dialogs import approval_note
from densestudio.ui.workers import Worker

if TYPE_CHECKING:
    from densestudio.ui.context import AppContext

CHECK_SAMPLES = 8
EXPORT_STEPS = ("preparing images", "measuring the training data", "converting to",
                "checking the file")  # the stages ml.export reports, in order
FORMATS = {  # combo text -> format
    "ONNX (.onnx) — runs in ONNX Runtime: C++, C#, Python, Node.js": "onnx",
    "TorchScript (.pt) — needs PyTorch (deprecated by torch)": "torchscript",
}


def describe_parity(metadata: dict) -> str:
    """One line on the parity check stored in the file ("" for files made before it)."""
    p = metadata.get("parity")
    if not isinstance(p, dict):
        return ""
    return (f"{p.get('runtime')} gives the app's answers on all {p.get('n')} {p.get('subset')} "
            f"images: max probability difference {float(p.get('max_abs_diff', 0)):.1e} "
            f"(tolerance {p.get('tolerance')}), same class on "
            f"{float(p.get('argmax_agreement', 0)) * 100:.1f} %")


def describe_ood(metadata: dict) -> str:
    ood = metadata.get("ood")
    if not isinstance(ood, dict):
        return "—"
    cal = ood.get("calibration", {})
    return (f"images unlike the {ood.get('bank_size')} training images (ood_score > "
            f"{float(ood.get('threshold', 0)):.3f}) are UNSURE; flags "
            f"{float(cal.get('flagged', 0)) * 100:.1f} % of {cal.get('n')} validation images")


def describe_frames(metadata: dict) -> str:
    entry = metadata.get("frame_checks")
    if not isinstance(entry, dict):
        return "—"
    return (f"frames too dark, overexposed, out of focus, flat or unlike all "
            f"{int(entry.get('n', 0)):,} training images (brightness, contrast, clipping, "
            f"sharpness; ranges per class) are UNSURE, whatever the model says")


def output_text(views: int) -> str:
    """What the file outputs, in words (no "TTA")."""
    text = "one probability per class (they add up to 1)"
    if views > 1:
        text += (f"; each is the average over {views} flipped / rotated copies of the image, "
                 "which makes it steadier")
    return text


def operating_point_text(point: dict | None) -> str:
    """The OK/NG rule stored in the file, or how to add one."""
    if not point:
        return ("none saved: the file gives class probabilities only (set one with "
                "<i>OK/NG threshold…</i> in the Review tab, then export again)")
    good, t = html.escape(str(point.get("good_class"))), float(point.get("threshold", 0.5))
    text = f"OK when P({good}) ≥ {t:.3f}, else NG"
    low, high = point.get("unsure_low"), point.get("unsure_high")
    if low is not None and high is not None:
        text += (f"; UNSURE (to a person) when {float(low):.3f} ≤ P({good}) &lt; "
                 f"{float(high):.3f}")
    return text


def describe(result: ExportResult) -> str:
    """HTML summary of an exported file's metadata."""
    m = result.metadata
    inp = m.get("input", {})
    metrics = m.get("metrics", {})
    names = m.get("class_names", [])
    fmt = "ONNX" if m.get("onnx") else "TorchScript"
    prep = m.get("preprocessing") or {}
    fit = {"letterbox": "aspect ratio kept (padded)", "stretch": "stretched"}.get(
        prep.get("fit") or "", "")
    rows = [
        ("File", f"{Path(result.path).name} ({fmt}, {result.size_bytes / 1e6:.1f} MB)"),
        ("Classes", f"{len(names)}: " + ", ".join(names)),
        ("Input", f"{inp.get('width', inp.get('size'))} × {inp.get('height', inp.get('size'))}"
                  f" px, {inp.get('mode')} "
                  f"({inp.get('channels')} channel{'s' if inp.get('channels') != 1 else ''}), "
                  f"{fit + ', ' if fit else ''}pixels in [0, 1]"),
        ("Model", f"{m.get('architecture')} · normalization inside the model"),
        ("Output", output_text(int(m.get("tta_views", 1) or 1))),
        ("OK/NG", operating_point_text(m.get("operating_point"))),
    ]
    scores = [summary.long_text(summary.summarize(metrics, subset=subset))
              for subset in ("test", "val") if metrics.get(f"{subset}_acc") is not None]
    gap = summary.side_by_side(metrics)
    rows.append(("Metrics", "; ".join(scores) or "—"))
    if "points apart" in gap:
        rows.append(("Test vs validation", f"<span style='color:#b26a00'>⚠ {gap}</span>"))
    run = m.get("run", {})
    rows.append(("Trained", f"run #{run.get('id')} {run.get('name', '')}, best epoch "
                            f"{run.get('best_epoch')}"))
    rows.append(("Data", f"fingerprint {str(m.get('data_fingerprint') or '—')[:16]}"))
    rows.append(("Made with", f"DenseStudio {m.get('app_version')}, torch "
                              f"{m.get('torch_version')}"))
    if m.get("onnx"):
        rows.append(("Unknown inputs", describe_ood(m)))
    rows.append(("Frame checks", describe_frames(m)))
    rows.append(("Parity", describe_parity(m) or "—"))
    body = "".join(f"<tr><td style='padding-right:10px'><b>{k}</b></td><td>{v}</td></tr>"
                   for k, v in rows)
    return f"<table cellspacing=2>{body}</table>"


class ExportDialog(QDialog):
    exported = Signal(object)  # ExportResult
    checked = Signal(object)  # list[CheckRow]

    def __init__(self, host: AppContext, run_id: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.host = host
        assert host.controller is not None  # opened for a run of the open project
        self.project = host.controller.project
        self.run = core_runs.get_run(self.project, run_id)
        self.export_result: ExportResult | None = None
        self.check_rows: list[CheckRow] = []
        self.last_error: str | None = None
        self.setWindowTitle(f"Export model — {run_title(self.run)}")
        self.setMinimumWidth(640)

        default = self.project.files_root / f"{self.project.name}-run{run_id}.onnx"
        self.path_edit = QLineEdit(str(default), self)
        self.path_edit.editingFinished.connect(self._follow_suffix)
        browse = QPushButton("Browse…", self)
        browse.clicked.connect(self._browse)
        path_row = QHBoxLayout()
        path_row.addWidget(self.path_edit, 1)
        path_row.addWidget(browse)
        self.format_combo = QComboBox(self)
        for text, fmt in FORMATS.items():
            self.format_combo.addItem(text, fmt)
        self.format_combo.currentIndexChanged.connect(self._format_changed)
        from densestudio.ml.operating_point import load_operating_point

        point = load_operating_point(self.project, run_id)
        self._rule = (f", the OK/NG threshold (good class '{point.good_class}')" if point
                      else "")
        intro = self.intro = QLabel(self._intro_text(), self)
        intro.setWordWrap(True)
        note, approved = approval_note(self.project, run_id)  # export the approved run
        self.approval = QLabel(note, self)
        self.approval.setWordWrap(True)
        self.approval.setStyleSheet(f"color: {'#1b7f3b' if approved else '#b26a00'};")
        form = QFormLayout()
        form.addRow("File", path_row)
        form.addRow("Format", self.format_combo)

        self.export_button = QPushButton("Export", self)
        self.export_button.setDefault(True)
        self.check_button = QPushButton("Check it", self)
        self.check_button.setToolTip(
            "Show the parity figures measured on every test image when the file was written, "
            f"then reload the file and predict {CHECK_SAMPLES} of the run's test images")
        self.check_button.setEnabled(False)
        self.status = QLabel(self)
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.contents = QTextBrowser(self)
        self.contents.setMinimumHeight(170)
        self.contents.setOpenLinks(False)
        self.contents.setHtml("<i>Export to see what the file contains.</i>")
        self.check_table = QTableWidget(0, 5, self)
        self.check_table.setHorizontalHeaderLabels(["Image", "Label", "Model file says",
                                                    "Confidence", "OK/NG"])
        self.check_table.verticalHeader().hide()
        self.check_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.check_table.horizontalHeader().setSectionResizeMode(
            QHeaderView.ResizeMode.ResizeToContents)
        self.check_table.horizontalHeader().setSectionResizeMode(
            0, QHeaderView.ResizeMode.Stretch)
        self.check_table.setMinimumHeight(150)
        self.check_table.hide()
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.reject)
        row = QHBoxLayout()
        row.addWidget(self.export_button)
        row.addWidget(self.check_button)
        row.addWidget(self.status, 1)

        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self.approval)
        layout.addLayout(form)
        layout.addLayout(row)
        self.progress = JobProgress(self)  # an export takes a minute: its steps, Cancel
        self.progress.cancelRequested.connect(self._cancel)
        layout.addWidget(self.progress)
        layout.addWidget(self.contents, 2)
        layout.addWidget(self.check_table, 3)
        layout.addWidget(buttons)
        self.export_button.clicked.connect(self.export)
        self.check_button.clicked.connect(self.check)

    @property
    def fmt(self) -> str:
        return str(self.format_combo.currentData())

    def _intro_text(self) -> str:
        runs_in = ("It runs in ONNX Runtime without DenseStudio or PyTorch" if self.fmt == "onnx"
                   else "It needs PyTorch to run (for the line, ONNX needs neither PyTorch nor "
                        "DenseStudio)")
        return (f"One {'ONNX' if self.fmt == 'onnx' else 'TorchScript'} file with the class "
                f"names, preprocessing, input size, metrics{self._rule} and a fingerprint of "
                f"the training data. {runs_in}, flags images unlike the training images as "
                "UNSURE, and is checked against the app before it is written.")

    def _format_changed(self) -> None:
        """Keep the file name's extension (and the description) in step with the format."""
        self.intro.setText(self._intro_text())
        suffix = ".onnx" if self.fmt == "onnx" else ".pt"
        text = self.path_edit.text().strip()
        if text and MODEL_FORMAT_BY_SUFFIX.get(Path(text).suffix.lower()) != self.fmt:
            self.path_edit.setText(str(Path(text).with_suffix(suffix)))

    def _follow_suffix(self) -> None:
        """A typed "model.pt" chooses TorchScript (as on the command line) instead of being
        refused for not matching the format shown."""
        named = MODEL_FORMAT_BY_SUFFIX.get(Path(self.path_edit.text().strip()).suffix.lower())
        index = self.format_combo.findData(named) if named else -1
        if index >= 0:
            self.format_combo.setCurrentIndex(index)

    def _browse(self) -> None:
        pattern = "ONNX model (*.onnx)" if self.fmt == "onnx" else "TorchScript model (*.pt)"
        path, _ = QFileDialog.getSaveFileName(self, "Export model", self.path_edit.text(),
                                              pattern)
        if path:
            self.path_edit.setText(path)

    def _start(self, worker: Worker, text: str) -> None:
        worker.failed.connect(self._on_failed)
        worker.done.connect(self._on_done)
        self.export_button.setEnabled(False)
        self.check_button.setEnabled(False)
        self.status.setText(text)
        self.host.jobs.start(worker, self, error_title=None)

    @property
    def worker(self) -> Worker | None:
        """Its running job: one at a time, held by the app's ``JobRunner``."""
        return self.host.jobs.job_of(self)

    def _cancel(self) -> None:
        if self.worker is not None:
            self.worker.cancel()

    def _on_export_event(self, event: object) -> None:
        """"Step 3 of 4: converting to onnx…" in the progress bar."""
        from densestudio.ml.export import ExportProgress

        if isinstance(event, ExportProgress):
            step = next((k for k, prefix in enumerate(EXPORT_STEPS, 1)
                         if event.stage.startswith(prefix)), 1)
            self.progress.count(step - 1, len(EXPORT_STEPS),
                                f"Step {step} of {len(EXPORT_STEPS)}: {event.stage}…")

    def _on_done(self) -> None:
        self.progress.hide()
        self.export_button.setEnabled(True)
        self.check_button.setEnabled(self.export_result is not None)

    def _on_failed(self, message: str) -> None:
        self.last_error = message
        self.status.setStyleSheet("color: #c62828;")
        self.status.setText(message)

    def export(self) -> Worker | None:
        self._follow_suffix()
        text = self.path_edit.text().strip()
        if not text or self.worker is not None:
            return None
        self.status.setStyleSheet("")
        worker = Worker(export_job, self.project, self.run.id, text, self.fmt, parent=self)
        worker.finished.connect(self._on_exported)
        worker.event.connect(self._on_export_event)
        self._start(worker, "Exporting…")
        self.progress.start("Exporting…")
        return worker

    def _on_exported(self, result: ExportResult) -> None:
        self.export_result = result
        self.path_edit.setText(result.path)
        self.contents.setHtml(describe(result))
        self.status.setStyleSheet("color: #1b7f3b;")
        self.status.setText(f"Written: {result.path}")
        self.exported.emit(result)

    def samples(self) -> list[tuple[str, str | None]]:
        """A few of the run's test images (else validation) with their labels at the run."""
        names = self.run.class_names
        for split in ("test", "val"):
            rows = core_runs.run_images(self.project, self.run.id, split)
            if rows:
                break
        step = max(1, len(rows) // CHECK_SAMPLES)
        picked = rows[::step][:CHECK_SAMPLES]
        infos = {i.id: i for i in self.project.images_by_ids([r.image_id for r in picked])}
        return [(infos[r.image_id].path, names[r.class_index]) for r in picked
                if r.image_id in infos]

    def check(self) -> Worker | None:
        if self.export_result is None or self.worker is not None:
            return None
        self.status.setStyleSheet("")
        worker = Worker(check_export_job, self.export_result.path, self.samples(), parent=self)
        worker.finished.connect(self._on_checked)
        self._start(worker, "Loading the file and predicting…")
        return worker

    def _on_checked(self, rows: list[CheckRow]) -> None:
        self.check_rows = list(rows)
        self.check_table.setRowCount(len(rows))
        for i, r in enumerate(rows):
            mark = "" if r.agrees is None else ("✓ " if r.agrees else "✗ ")
            unsure = f" (UNSURE: {r.reason or 'unlike the training images'})" if r.unfamiliar \
                else ""
            values = (Path(r.path).name, r.expected or "—",
                      r.error or f"{mark}{r.predicted}{unsure}", f"{r.confidence * 100:.1f} %",
                      r.decision or "")
            for col, text in enumerate(values):
                item = QTableWidgetItem(text)
                if col == 0:
                    item.setToolTip(r.path)
                self.check_table.setItem(i, col, item)
        decided = any(r.decision for r in rows)
        self.check_table.setColumnHidden(4, not decided)  # the file has no OK/NG rule
        self.check_table.show()
        ok = sum(1 for r in rows if r.agrees)
        errors = sum(1 for r in rows if r.error)
        self.status.setStyleSheet("color: #1b7f3b;" if not errors else "color: #c62828;")
        verdicts = ""
        if decided:
            counts = {d: sum(r.decision == d for r in rows) for d in ("OK", "NG", "UNSURE")}
            verdicts = " Its OK/NG rule says " + ", ".join(
                f"{k} {v}" for k, v in counts.items() if v) + "."
        parity = describe_parity(self.export_result.metadata) if self.export_result else ""
        self.status.setText(
            (f"Parity: {parity}. " if parity else "")
            + f"The file loads and predicts: {ok} of {len(rows)} sample images match their "
            "labels" + (f"; {errors} could not be read." if errors else ".") + verdicts)
        if self.export_result is not None:
            from densestudio.ml.report import record_export_check

            record_export_check(self.project, self.run.id, self.export_result.path, ok,
                                len(rows), errors)
        self.checked.emit(self.check_rows)

    def metadata_json(self) -> str:
        return json.dumps(self.export_result.metadata, indent=1) if self.export_result else ""

    def done(self, result: int) -> None:  # QDialog.done
        if self.worker is not None:
            self.worker.cancel()
        super().done(result)
