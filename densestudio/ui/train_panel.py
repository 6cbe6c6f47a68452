"""The Train tab: settings (recommended defaults), Train / Cancel / Resume, live progress and
plots, and the list of runs.

Training runs ``jobs.train_job`` (``ml.train.fit``) in a ``Worker`` thread; the GUI thread only
receives batched events (~10 Hz) and appends them to the plots. The run trains on a snapshot
of the labels, so the user can keep labeling while it runs.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from densestudio.core import formatting
from densestudio.core import runs as core_runs
from densestudio.core.formatting import html_text
from densestudio.ml.config import ARCHS, BACKBONE_ARCH, COMPACT_ARCHS, TrainConfig
from densestudio.ml.recommend import DEFAULT_BUDGET_S, Recommendation
from densestudio.ui.job_progress import ElidedProgressBar
from densestudio.ui.jobs import (
    TrainingSteps,
    TrainSpeed,
    online_probe_job,
    train_job,
    train_speed_job,
)
from densestudio.ui.plots import TrainingPlots
from densestudio.ui.runs_panel import RunsPanel
from densestudio.ui.workers import Worker

WARN_COLOR = "#b26a00"
# "0": the input size comes from the reference table, not from this computer's speed. Tests
# set it (tests/ui/conftest.py): a speed arriving later would re-fill a form they filled.
MEASURE_ENV = "DENSESTUDIO_MEASURE_SPEED"


def speed_here_enabled() -> bool:
    return os.environ.get(MEASURE_ENV, "1") != "0"


def speed_from_runs(infos: list[core_runs.RunInfo], arch: str,
                    device: str) -> tuple[float, int] | None:
    """(images/s at 128 px, run id) of the newest finished run of ``arch`` trained on
    ``device`` on this computer, or None."""
    from densestudio.ml.budget import speed_of_run

    host = socket.gethostname()
    for info in infos:  # newest first
        owner = info.extra.get(core_runs.OWNER_KEY)
        if (info.status != "finished" or info.config.get("arch") != arch
                or (info.device or "").split(":")[0] != device
                or not isinstance(owner, dict) or owner.get("host") != host):
            continue
        speed = speed_of_run(info.config, info.metrics)
        if speed is not None:
            return speed, info.id
    return None

if TYPE_CHECKING:
    from densestudio.core.progress import CancelToken
    from densestudio.core.store import Project
    from densestudio.ml.events import BatchProgress, EpochEnded
    from densestudio.ml.zoo import Opener, ProgressFn
    from densestudio.ui.context import AppContext
    from densestudio.ui.controller import ProjectController

log = logging.getLogger(__name__)

IMAGENET_ARCH = "densenet121"  # what the recommendation uses when ImageNet weights are here
IMAGENET_BYTES = 32_342_954  # densenet121-a639ec97.pth
IMAGENET_HOST = "download.pytorch.org"

ARCH_INFO = {
    "densenet_bc_tiny": ("0.14 M parameters", "quick tries; fast on any CPU"),
    "densenet_bc_1m": ("1.0 M parameters", "best choice on a CPU; DenseStudio's backbone"),
    "densenet121": ("8.0 M parameters", "pretrained; GPU recommended (CPU: slow)"),
    "densenet169": ("14.1 M parameters", "pretrained; GPU recommended"),
    "densenet201": ("20.0 M parameters", "pretrained; GPU"),
    "densenet161": ("28.7 M parameters", "pretrained; GPU"),
}
STRATEGY_TEXT = {
    "full": "Train everything",
    "head": "Train only the new head (frozen backbone)",
    "head_then_full": "Head first, then everything",
}
AUGMENT_TEXT = {
    "none": "None",
    "light": "Light (flips)",
    "inspection": "Inspection (flips, rotations, brightness)",
}
BALANCE_TEXT = {
    "none": "None",
    "sqrt_sampler": "Square-root balanced sampling",
    "sampler": "Balanced sampling",
    "weighted_loss": "Weighted loss",
    "logit_adjust": "Logit adjustment",
}
MONITOR_TEXT = {
    "val_balanced_acc": "Balanced accuracy",
    "val_macro_f1": "Macro-F1",
    "val_acc": "Accuracy",
    "val_loss": "Validation loss",
}


def epoch_message(event: EpochEnded, total_epochs: int) -> str:
    """The status line after an epoch: the metric that picks the checkpoint first (plain
    accuracy flatters a model that always answers the big class), then accuracy and loss."""
    name = MONITOR_TEXT.get(event.monitor, event.monitor.replace("val_", "").replace("_", " "))
    value = event.monitor_value
    if event.monitor == "val_loss":
        shown = "—" if value is None else f"{value:.3f}"
    else:
        shown = "—" if value is None else f"{value * 100:.1f} %"
    acc = "—" if event.val_acc is None else f"{event.val_acc * 100:.1f} %"
    star = " (best so far)" if event.improved else ""
    what = name.lower() if event.monitor == "val_loss" else f"validation {name.lower()}"
    return (f"Epoch {event.epoch}/{total_epochs}: {what} {shown}{star} "
            f"— it picks the checkpoint · accuracy {acc}, loss {event.val_loss or 0:.3f}.")


def weights_status(arch: str, weights_path: str | None) -> tuple[str, str]:
    """("ok" | "missing" | "none", text) for the pretrained weights of ``arch``."""
    from densestudio.ml import zoo

    if arch in COMPACT_ARCHS:
        return "none", "No ImageNet weights for compact models (see \"Starts from\")."
    if weights_path:
        ok = Path(weights_path).is_file()
        return ("ok" if ok else "missing",
                f"Weights file: {Path(weights_path).name}" if ok
                else f"Weights file not found: {weights_path}")
    try:
        path = zoo.resolve_weights(arch, allow_download=False)
    except zoo.WeightsError:
        name = zoo.weight_spec(arch).filename
        return "missing", (f"ImageNet weights not on this computer ({name}). They download "
                           "when training starts if you are online; offline, choose the file.")
    return "ok", f"ImageNet weights cached ({path.name})."


def backbone_problem() -> str | None:
    """None if DenseStudio's shipped backbone is usable, else why not (checked once per file
    version: the Train tab asks on every label change)."""
    from densestudio.ml import backbone

    return backbone.check()


def starting_point_text(cfg: TrainConfig) -> str:
    """Which weights the form's settings start from, and why (the Train tab's "Starts
    from" line)."""
    if cfg.uses_pretrained:
        return "ImageNet weights: they are on this computer (or chosen), the best start."
    if cfg.backbone:
        return ("DenseStudio's backbone (the compact model pretrained on generated textures "
                "and defects): no ImageNet weights on this computer.")
    problem = backbone_problem() if cfg.arch == BACKBONE_ARCH else None
    if problem:
        return f"Random weights (from scratch): {problem}"
    return "Random weights (from scratch)."


def probe_online(timeout_s: float = 3.0) -> bool:
    """Whether the ImageNet weights' server answers (run in a worker thread: never waits in
    the GUI)."""
    import socket

    try:
        socket.create_connection((IMAGENET_HOST, 443), timeout=timeout_s).close()
    except OSError:
        return False
    return True


def download_imagenet(opener: Opener | None = None, *, on_event: ProgressFn | None = None,
                      cancel: CancelToken | None = None) -> str:  # fmt: skip
    """Worker job: fetch densenet121's ImageNet weights into torch's hub cache."""
    from densestudio.ml import zoo

    return str(zoo.resolve_weights(IMAGENET_ARCH, opener=opener, on_progress=on_event))


class TrainPanel(QWidget):
    trainingStarted = Signal(int)  # run id
    trainingEnded = Signal(object)  # run id or None; after finish, cancel or failure
    runFinished = Signal(int)
    reviewRequested = Signal(int)

    def __init__(self, host: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.host = host  # the application (ui.context)
        self.controller: ProjectController | None = None
        self.edited = False  # the user changed a setting: stop following recommendations
        self.run_id: int | None = None
        self.total_epochs = 0
        self.device_text = ""
        self.last_message = ""
        self.last_outcome: str | None = None  # "finished" | "cancelled" | "failed"
        self.events_seen: dict[str, int] = {}
        self.plotted_run: int | None = None  # the run whose curves the plots show
        # (arch, device) -> images/s at 128 px measured here this session; the job's owner
        self.speeds: dict[tuple[str, str], float] = {}
        self._speed_job = object()
        self._building = False
        self._build()

    # ================================================================ construction
    def _build(self) -> None:
        self.arch = QComboBox(self)
        for arch in ARCHS:
            size, hint = ARCH_INFO.get(arch, ("", ""))
            self.arch.addItem(f"{arch}  ·  {size}", arch)
            self.arch.setItemData(self.arch.count() - 1, hint, Qt.ItemDataRole.ToolTipRole)
        self.arch_hint = QLabel(self)
        self.arch_hint.setWordWrap(True)
        self.pretrained = QCheckBox("Start from ImageNet weights", self)
        self.backbone = QCheckBox("Start from DenseStudio's backbone", self)
        self.backbone.setToolTip("The compact model pretrained on generated textures and "
                                 "defects (ships with DenseStudio, works offline)")
        self.start_label = QLabel(self)
        self.start_label.setWordWrap(True)
        self.download_button = QPushButton("Download ImageNet weights…", self)
        self.download_button.setVisible(False)
        self.download_label = QLabel(self)
        self.download_label.setWordWrap(True)
        self.download_label.setVisible(False)
        self.online: bool | None = None  # None = not known yet (probed in a worker)
        self.download_worker: Worker | None = None
        self.weights_label = QLabel(self)
        self.weights_label.setWordWrap(True)
        self.weights_button = QPushButton("Choose weights file…", self)
        self.weights_path: str | None = None
        self.img_size = QSpinBox(self)
        self.img_size.setRange(32, 1024)
        self.img_size.setSingleStep(16)
        self.img_size.setSuffix(" px")
        self.keep_aspect = QCheckBox("Keep aspect ratio", self)
        self.keep_aspect.setToolTip("Fit each image into the input and pad the rest, instead "
                                    "of squashing it: thin defects in strips stay visible")
        self.canvas_label = QLabel(self)
        size_row = QHBoxLayout()
        size_row.setContentsMargins(0, 0, 0, 0)
        size_row.addWidget(self.img_size)
        size_row.addWidget(self.keep_aspect, 1)
        self.budget_on, self.budget, budget_row = self._minutes_row(
            "Fit into about", "The run measures its speed and plans its epochs to finish in "
            "about this time on this computer")
        self.cap_on, self.cap, cap_row = self._minutes_row(
            "Keep training while validation improves, up to", "When validation still improves "
            "near the planned end, the run may plan more epochs, as many as finish within "
            "this time")
        self.epochs = QSpinBox(self)
        self.epochs.setRange(1, 1000)
        self.batch = QSpinBox(self)
        self.batch.setRange(2, 1024)
        self.lr = QDoubleSpinBox(self)
        self.lr.setDecimals(5)
        self.lr.setRange(0.00001, 1.0)
        self.lr.setSingleStep(0.0005)
        self.strategy = QComboBox(self)
        for key, text in STRATEGY_TEXT.items():
            self.strategy.addItem(text, key)
        self.augment = QComboBox(self)
        for key, text in AUGMENT_TEXT.items():
            self.augment.addItem(text, key)
        self.balance = QComboBox(self)
        for key, text in BALANCE_TEXT.items():
            self.balance.addItem(text, key)
        self.monitor = QComboBox(self)
        for key, text in MONITOR_TEXT.items():
            self.monitor.addItem(text, key)
        self.monitor.setToolTip("The validation metric that picks the saved (best) epoch and "
                                "drives early stopping")
        self.early = QCheckBox("Stop if no gain for", self)
        self.patience = QSpinBox(self)
        self.patience.setRange(1, 100)
        self.patience.setSuffix(" epochs")
        self.patience.setToolTip("Stop when the validation score has not improved for this "
                                 "many epochs (the best epoch's weights are kept)")
        early_row = QHBoxLayout()
        early_row.setContentsMargins(0, 0, 0, 0)
        early_row.addWidget(self.early)
        early_row.addWidget(self.patience, 1)
        self.good_label = QLabel(self)
        self.good_label.setWordWrap(True)
        self.good_label.setToolTip("The class that means a good part; set or clear it in the "
                                   "Classes panel (its OK button)")
        self.max_miss = QDoubleSpinBox(self)
        self.max_miss.setDecimals(1)
        self.max_miss.setRange(0.1, 50.0)
        self.max_miss.setSingleStep(0.5)
        self.max_miss.setSuffix(" % of defects")
        self.max_miss.setToolTip(
            "After training, the OK/NG threshold is picked on the validation images so that at "
            "most this share of defects is passed as good (shown at 95 % confidence), with the "
            "fewest good parts rejected; borderline parts go to a person (UNSURE)")
        self.device = QComboBox(self)
        self.name = QLineEdit(self)
        self.name.setPlaceholderText("optional, e.g. 'more scratches'")
        self.defaults_button = QPushButton("Recommended settings", self)
        self.defaults_button.setToolTip("Settings picked from the number of labeled images, "
                                        "the device and the weights available")
        self.data_label = QLabel(self)
        self.data_label.setWordWrap(True)
        self.leak_label = QLabel(self)  # near-duplicates across splits: figures that flatter
        self.leak_label.setWordWrap(True)
        self.leak_label.setStyleSheet(f"color: {WARN_COLOR};")
        self.leak_label.hide()
        self.reasons_label = QLabel(self)
        self.reasons_label.setWordWrap(True)
        self.reasons_label.setTextFormat(Qt.TextFormat.RichText)

        form_box = QGroupBox("Settings", self)
        form = QFormLayout(form_box)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow(self.data_label)
        form.addRow(self.leak_label)
        form.addRow(self.reasons_label)
        form.addRow("Model", self.arch)
        form.addRow("", self.arch_hint)
        form.addRow("Pretrained", self.pretrained)
        form.addRow("", self.weights_label)
        form.addRow("", self.weights_button)
        form.addRow("", self.backbone)
        form.addRow("Starts from", self.start_label)
        form.addRow("", self.download_button)
        form.addRow("", self.download_label)
        form.addRow("Image size", size_row)
        form.addRow("", self.canvas_label)
        form.addRow("Training time", budget_row)
        form.addRow("", cap_row)
        self.epochs_label = QLabel("Epochs", self)
        form.addRow(self.epochs_label, self.epochs)
        form.addRow("Batch size", self.batch)
        form.addRow("Learning rate", self.lr)
        form.addRow("Fine-tuning", self.strategy)
        form.addRow("Augmentation", self.augment)
        form.addRow("Class balance", self.balance)
        form.addRow("Best checkpoint by", self.monitor)
        form.addRow("Early stopping", early_row)
        form.addRow("Good class", self.good_label)
        form.addRow("Passed as good, at most", self.max_miss)
        form.addRow("Device", self.device)
        form.addRow("Run name", self.name)
        form.addRow("", self.defaults_button)

        self.train_button = QPushButton("Train", self)
        self.train_button.setDefault(True)
        self.train_button.setMinimumHeight(34)
        font = self.train_button.font()
        font.setBold(True)
        self.train_button.setFont(font)
        self.cancel_button = QPushButton("Cancel", self)
        self.resume_button = QPushButton("Resume", self)
        self.resume_button.setToolTip("Continue the selected stopped run")
        self.message = QLabel(self)
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        buttons = QHBoxLayout()
        buttons.addWidget(self.train_button, 2)
        buttons.addWidget(self.cancel_button, 1)
        buttons.addWidget(self.resume_button, 1)

        left_inner = QWidget(self)
        left_layout = QVBoxLayout(left_inner)
        left_layout.addWidget(form_box)
        left_layout.addStretch(1)
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(left_inner)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        for combo in (self.arch, self.strategy, self.augment, self.balance, self.monitor,
                      self.device):
            combo.setSizeAdjustPolicy(
                QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(12)
        # Never narrower than the form needs (no clipped fields, no horizontal scrolling).
        scroll.setMinimumWidth(left_inner.minimumSizeHint().width()
                               + scroll.verticalScrollBar().sizeHint().width() + 4)
        # Only the form scrolls: Train/Cancel/Resume and the run's outcome stay in view on a
        # laptop screen (below the form they were cut off at 1440x900).
        left = QWidget(self)
        left_column = QVBoxLayout(left)
        left_column.setContentsMargins(0, 0, 0, 0)
        left_column.addWidget(scroll, 1)
        left_column.addLayout(buttons)
        left_column.addWidget(self.message)

        self.progress = ElidedProgressBar(self)
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(True)
        self.progress.setFormat("")
        self.status = QLabel("Not training.", self)
        self.status.setWordWrap(True)  # a long line used to widen the column past a laptop screen
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.plots = TrainingPlots(self)
        self.runs = RunsPanel(self)

        top = QWidget(self)
        top_layout = QVBoxLayout(top)
        top_layout.setContentsMargins(0, 0, 0, 0)
        top_layout.addWidget(self.progress)
        top_layout.addWidget(self.status)
        top_layout.addWidget(self.plots, 1)
        self.right = QSplitter(Qt.Orientation.Vertical, self)
        self.right.addWidget(top)
        self.right.addWidget(self.runs)
        self.right.setStretchFactor(0, 3)
        self.right.setStretchFactor(1, 1)
        self.right.setChildrenCollapsible(False)
        self.splitter = QSplitter(Qt.Orientation.Horizontal, self)
        self.splitter.addWidget(left)
        self.splitter.addWidget(self.right)
        self.splitter.setStretchFactor(0, 0)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([400, 900])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.splitter)

        self.arch.currentIndexChanged.connect(self._on_arch)
        self.pretrained.toggled.connect(self._on_pretrained)
        self.weights_button.clicked.connect(self.choose_weights)
        self.backbone.toggled.connect(self._on_pretrained)
        self.download_button.clicked.connect(self.offer_download)
        self.early.toggled.connect(self.patience.setEnabled)
        self.budget_on.toggled.connect(self._on_budget)
        self.cap_on.toggled.connect(self._on_budget)
        self.budget.valueChanged.connect(self.cap.setMinimum)  # the cap is never below it
        self.img_size.valueChanged.connect(self._show_canvas)
        self.keep_aspect.toggled.connect(self._show_canvas)
        self.defaults_button.clicked.connect(self.apply_recommended)
        # Any edit of a setting keeps the form as the user left it (no re-recommending).
        for combo in (self.arch, self.strategy, self.augment, self.balance, self.monitor,
                      self.device):
            combo.activated.connect(self._mark_edited)
        for spin in (self.img_size, self.epochs, self.batch, self.lr, self.budget,
                     self.cap, self.patience, self.max_miss):
            spin.editingFinished.connect(self._mark_edited)
        for box in (self.pretrained, self.backbone, self.keep_aspect, self.budget_on,
                    self.cap_on, self.early):
            box.clicked.connect(self._mark_edited)
        self.name.textEdited.connect(self._mark_edited)
        self.train_button.clicked.connect(self.start_training)
        self.cancel_button.clicked.connect(self.cancel_training)
        self.resume_button.clicked.connect(self._resume_selected)
        self.runs.runSelected.connect(self._on_run_selected)
        self.runs.runUpdated.connect(self._on_run_updated)
        self.runs.resumeRequested.connect(self.resume_run)
        self.runs.reviewRequested.connect(self.reviewRequested)
        self.runs.runDeleted.connect(lambda run_id: self.controller.run_deleted(run_id)
                                     if self.controller is not None else None)
        self._update_buttons()

    # ================================================================ project
    def _on_approvals_changed(self) -> None:
        self.runs.refresh()  # the approved run is marked in the list

    def _minutes_row(self, text: str, tip: str) -> tuple[QCheckBox, QSpinBox, QHBoxLayout]:
        """A check box and its minutes (1 min to a day) on one row."""
        check, minutes = QCheckBox(text, self), QSpinBox(self)
        minutes.setRange(1, 24 * 60)
        minutes.setSuffix(" min")
        minutes.setToolTip(tip)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(check)
        row.addWidget(minutes, 1)
        return check, minutes, row

    def set_controller(self, controller: ProjectController | None) -> None:
        if self.controller is not None:
            self.controller.countsChanged.disconnect(self._on_counts_changed)
            self.controller.approvalsChanged.disconnect(self._on_approvals_changed)
            self.controller.classesChanged.disconnect(self.show_good_class)
            self.controller.splitsChanged.disconnect(self.refresh_leaks)
        self.controller = controller
        self.plots.reset()  # before the runs list: it selects the newest run and plots it
        self.plotted_run = None
        self.status.setText("Not training.")
        self.runs.set_project(controller.project if controller else None)
        self.edited = False
        if controller is not None:
            controller.countsChanged.connect(self._on_counts_changed)
            controller.approvalsChanged.connect(self._on_approvals_changed)
            controller.classesChanged.connect(self.show_good_class)
            controller.splitsChanged.connect(self.refresh_leaks)
        self.refresh_leaks()
        if controller is not None:
            # Import the engine here, not in the worker: loading torchvision's C extensions
            # holds the GIL for ~0.2 s, which would freeze the GUI when training starts.
            from densestudio.ml.threads import start_warm_up

            for engine in ("densestudio.ml.evaluate", "densestudio.ml.train"):
                importlib.import_module(engine)

            start_warm_up()  # torch's lazy imports now, not in the middle of a run

            self._fill_devices()
            self.apply_recommended()
            self._probe_online()
        self.progress.setValue(0)
        self.progress.setFormat("")
        self.message.clear()
        self._update_buttons()

    @property
    def project(self) -> Project | None:
        return self.controller.project if self.controller else None

    @property
    def running(self) -> bool:
        return self.worker is not None

    def _fill_devices(self) -> None:
        from densestudio.ml.runtime import resolve_device

        self.device.clear()
        auto = resolve_device("auto").type
        self.device.addItem(f"Automatic ({auto.upper()})", "auto")
        self.device.addItem("CPU", "cpu")
        if auto != "cpu":
            self.device.addItem(auto.upper(), auto)
        self.device_type = auto

    def recommendation(self) -> Recommendation:
        """Settings for the project's labeled images as they are now, and why."""
        from densestudio.core.profile import data_profile
        from densestudio.ml.recommend import measured_speed, recommend

        state, _ = weights_status(IMAGENET_ARCH, None)
        assert self.project is not None  # only asked while a project is open
        profile, device = data_profile(self.project), getattr(self, "device_type", "cpu")
        backbone = state != "ok" and backbone_problem() is None
        rec = recommend(profile, device, weights_available=state == "ok",
                        backbone_available=backbone)
        known = self.known_speed(rec.config.arch, device)
        if known is None:
            return rec
        per_s, source = known
        return recommend(profile, device, weights_available=state == "ok",
                         backbone_available=backbone,
                         speed=measured_speed(rec.config.arch, per_s), speed_source=source)

    def known_speed(self, arch: str, device: str) -> tuple[float, str] | None:
        """This computer's speed of ``arch`` (images/s at 128 px) and where it comes from:
        the project's newest run of it here, else a measurement of this session."""
        if not speed_here_enabled():
            return None
        from_run = speed_from_runs(self.runs.infos, arch, device)
        if from_run is not None:
            return from_run[0], f"from run #{from_run[1]}"
        if (arch, device) in self.speeds:
            return self.speeds[(arch, device)], "measured here"
        return None

    def measure_speed(self, arch: str, device: str) -> Worker | None:
        """Measure the speed of ``arch`` in the background (once per session); when it
        arrives the recommendation is made again, unless the user edited the form."""
        if (not speed_here_enabled() or (arch, device) in self.speeds
                or self.host.jobs.busy(self._speed_job)):
            return None
        worker = Worker(train_speed_job, arch, device, parent=self)
        worker.on_result(self._on_speed)
        worker.failed.connect(lambda message: log.warning("Speed not measured: %s", message))
        self.host.jobs.start(worker, self._speed_job, error_title=None)
        return worker

    def _on_speed(self, speed: TrainSpeed) -> None:
        self.speeds[(speed.arch, speed.device)] = speed.images_per_s
        if self.controller is not None and not self.edited and not self.running:
            self.apply_recommended()

    def recommended_config(self) -> TrainConfig:
        return self.recommendation().config

    def apply_recommended(self) -> None:
        """Fill in the recommended settings; they then follow the labels (16.4) until the
        user changes a setting."""
        if self.controller is None:
            return
        rec = self.recommendation()
        self.weights_path = None
        self.set_form(rec.config)
        self.edited = False
        device = getattr(self, "device_type", "cpu")
        if self.known_speed(rec.config.arch, device) is None:
            self.measure_speed(rec.config.arch, device)
        counts = self.controller.counts(fresh=True)
        n = counts.total - counts.count(None)
        cores = os.cpu_count() or 1
        self.data_label.setText(
            f"{n:,} labeled images · {cores} CPU core{'s' if cores != 1 else ''}"
            + (f" · {self.device_type.upper()}" if self.device_type != "cpu" else "")
            + (". Recommended settings are filled in; press Train." if n else
               ". Label images (at least 2 classes) to train."))
        self.reasons_label.setText(
            "<small>" + "<br>".join(f"• {r}" for r in rec.reasons) + "</small>" if n else "")
        self.show_good_class()

    def show_good_class(self) -> None:
        """The project's good class: with one, the run ends with an OK/NG decision."""
        from densestudio.ml.operating_point import project_good_class

        if self.project is None:
            return
        good = project_good_class(self.project)
        if good.name is None:
            self.good_label.setText(f"<small>{html_text(good.describe().capitalize())}: the "
                                    "model decides by the most likely class. Mark the good "
                                    "class in the Classes panel for an OK/NG decision.</small>")
        else:
            self.good_label.setText(f"{html_text(good.describe())} <small>· the run ends "
                                    "with an OK/NG decision</small>")
        self.max_miss.setEnabled(good.name is not None)

    def showEvent(self, event: QShowEvent) -> None:
        self.refresh_leaks()  # the Splits panel's check may have found groups since
        super().showEvent(event)

    def refresh_leaks(self) -> None:
        """Warn while near-identical images span splits (the figures would flatter)."""
        from densestudio.core.splits import leak_warning
        from densestudio.core.store import split_leaks

        text = leak_warning(*split_leaks(self.project)) if self.project is not None else ""
        self.leak_label.setText(f"⚠ {text}" if text else "")
        self.leak_label.setVisible(bool(text))

    def _mark_edited(self, *_args: object) -> None:
        self.edited = True

    def _on_counts_changed(self) -> None:
        self.refresh_leaks()
        if self.controller is not None and not self.edited and not self.running:
            self.apply_recommended()

    def _on_budget(self, *_args: object) -> None:
        on = self.budget_on.isChecked()
        self.budget.setEnabled(on)
        self.cap_on.setEnabled(on)
        self.cap.setEnabled(on and self.cap_on.isChecked())
        self.epochs_label.setText("Epochs (at most)" if on else "Epochs")

    def _show_canvas(self, *_args: object) -> None:
        cfg = self.config()
        w, h = cfg.canvas
        how = "aspect ratio kept, padded" if cfg.fit == "letterbox" else "squashed"
        self.canvas_label.setText(f"<small>input {w} x {h} px ({how})</small>")

    # ================================================================ form <-> config
    def set_form(self, cfg: TrainConfig) -> None:
        self._building = True
        try:
            self.arch.setCurrentIndex(max(0, self.arch.findData(cfg.arch)))
            self.pretrained.setChecked(cfg.uses_pretrained)
            self.backbone.setChecked(cfg.backbone)
            if cfg.weights_path:
                self.weights_path = cfg.weights_path
            self.img_size.setValue(cfg.img_size)
            self.keep_aspect.setChecked(cfg.fit == "letterbox")
            self.budget_on.setChecked(cfg.time_budget_s is not None)
            self.budget.setValue(round((cfg.time_budget_s or DEFAULT_BUDGET_S) / 60))
            self.cap_on.setChecked(cfg.time_cap_s is not None)
            self.cap.setValue(round(cfg.time_cap_s / 60) if cfg.time_cap_s
                              else 2 * self.budget.value())
            self.epochs.setValue(cfg.epochs)
            self.batch.setValue(cfg.batch_size)
            self.lr.setValue(cfg.lr)
            self.strategy.setCurrentIndex(max(0, self.strategy.findData(cfg.strategy)))
            self.augment.setCurrentIndex(max(0, self.augment.findData(cfg.augment)))
            self.balance.setCurrentIndex(max(0, self.balance.findData(cfg.balance)))
            self.monitor.setCurrentIndex(max(0, self.monitor.findData(cfg.monitor)))
            self.early.setChecked(cfg.early_stopping_patience is not None)
            self.patience.setValue(cfg.early_stopping_patience or 5)
            self.patience.setEnabled(cfg.early_stopping_patience is not None)
            index = self.device.findData(cfg.device)
            self.device.setCurrentIndex(max(0, index))
            self.name.setText(cfg.name)
            self.max_miss.setValue(cfg.max_miss_rate * 100)
            self._base_config = cfg
        finally:
            self._building = False
        self._on_arch()
        self._on_budget()
        self._show_canvas()

    def config(self) -> TrainConfig:
        base = getattr(self, "_base_config", TrainConfig())
        arch = self.arch.currentData()
        pretrained = self.pretrained.isChecked() and arch not in COMPACT_ARCHS
        backbone = (self.backbone.isChecked() and arch == BACKBONE_ARCH
                    and backbone_problem() is None)  # fmt: skip
        strategy = self.strategy.currentData() if pretrained or backbone else "full"
        epochs = self.epochs.value()
        return base.with_(
            arch=arch, pretrained=pretrained, backbone=backbone,
            weights_path=self.weights_path if pretrained else None,
            img_size=self.img_size.value(), epochs=epochs, batch_size=self.batch.value(),
            fit="letterbox" if self.keep_aspect.isChecked() else "stretch",
            time_budget_s=60.0 * self.budget.value() if self.budget_on.isChecked() else None,
            time_cap_s=60.0 * self.cap.value()
            if self.budget_on.isChecked() and self.cap_on.isChecked() else None,
            monitor=self.monitor.currentData(),
            lr=float(self.lr.value()), strategy=strategy,
            augment=self.augment.currentData(), balance=self.balance.currentData(),
            early_stopping_patience=self.patience.value() if self.early.isChecked() else None,
            device=self.device.currentData() or "auto", name=self.name.text().strip(),
            max_miss_rate=round(self.max_miss.value() / 100, 4),
        ).unfreeze_within_epochs()  # fmt: skip

    def _on_arch(self, *_args: object) -> None:
        arch = self.arch.currentData()
        size, hint = ARCH_INFO.get(arch, ("", ""))
        self.arch_hint.setText(f"<small>{size} · {hint}</small>")
        compact = arch in COMPACT_ARCHS
        self.pretrained.setEnabled(not compact)
        if compact and not self._building:
            self.pretrained.setChecked(False)
        self._on_pretrained(self.pretrained.isChecked())

    def _on_pretrained(self, _on: bool) -> None:
        arch = self.arch.currentData()
        on = self.pretrained.isChecked() and arch not in COMPACT_ARCHS
        problem = backbone_problem() if arch == BACKBONE_ARCH else None
        self.backbone.setVisible(arch == BACKBONE_ARCH)
        self.backbone.setEnabled(problem is None)
        self.backbone.setToolTip(problem or "The compact model pretrained on generated textures "
                                 "and defects (ships with DenseStudio, works offline)")
        learned = on or (self.backbone.isChecked() and arch == BACKBONE_ARCH and problem is None)
        self.strategy.setEnabled(learned)
        if not learned:
            self.strategy.setCurrentIndex(self.strategy.findData("full"))
        self.start_label.setText(f"<small>{starting_point_text(self.config())}</small>")
        self._show_download_offer()
        self.weights_button.setVisible(arch not in COMPACT_ARCHS)
        self.weights_button.setEnabled(on)
        state, text = weights_status(arch, self.weights_path if on else None)
        color = {"ok": "#1b7f3b", "missing": "#b26a00"}.get(state, "")
        style = f"color: {color};" if color and on else "color: palette(placeholder-text);"
        self.weights_label.setStyleSheet(style)
        self.weights_label.setText(f"<small>{text}</small>")

    def choose_weights(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Choose a pretrained weights file", str(Path.home()),
            "PyTorch weights (*.pth *.pt);;All files (*)")
        if path:
            self.weights_path = path
            self._on_pretrained(True)

    # ================================================================ ImageNet download
    online_probe = staticmethod(probe_online)  # tests stub these two: never the network
    opener: Opener | None = None  # None: urlopen

    def _probe_online(self) -> None:
        """Ask once per project, in a worker thread, whether the weights' server answers."""
        if self.online is not None or weights_status(IMAGENET_ARCH, None)[0] == "ok":
            return
        # The probe function, not the panel, goes to the worker thread: no QObject there.
        worker = Worker(online_probe_job, self.online_probe, parent=self)
        worker.finished.connect(self._on_online)
        self.host.jobs.start(worker, None, error_title=None)

    def _on_online(self, online: object) -> None:
        self.online = bool(online)
        self._show_download_offer()

    def _show_download_offer(self) -> None:
        """The offer shows only when the file is missing and the machine is online."""
        missing = weights_status(IMAGENET_ARCH, None)[0] != "ok"
        busy = self.download_worker is not None
        show = bool(self.online) and missing and not self.running
        self.download_button.setVisible(show)
        self.download_button.setEnabled(not busy)
        self.download_label.setVisible(show or busy)
        if show and not busy:
            self.download_label.setText(f"<small>{self.download_text()}</small>")

    def download_text(self) -> str:
        from densestudio.ml import zoo

        spec = zoo.weight_spec(IMAGENET_ARCH)
        return (f"ImageNet weights ({spec.filename}, about {IMAGENET_BYTES / 1e6:.0f} MB) "
                f"would go into {zoo.hub_checkpoint_dir()}; with them the recommendation "
                f"starts {IMAGENET_ARCH} from ImageNet.")

    def confirm_download(self) -> bool:
        from PySide6.QtWidgets import QMessageBox

        answer = QMessageBox.question(
            self, "Download ImageNet weights", self.download_text() + " Download now?")
        return answer == QMessageBox.StandardButton.Yes

    def offer_download(self) -> Worker | None:
        """Ask for consent, then download in a worker; the recommendation follows."""
        if self.download_worker is not None or not self.confirm_download():
            return None
        worker = Worker(download_imagenet, self.opener, parent=self)
        worker.event.connect(self._on_download_event)
        worker.finished.connect(self._on_downloaded)
        worker.failed.connect(self._on_download_failed)
        worker.done.connect(self._on_download_done)
        self.download_worker = worker
        self.download_label.setText("<small>Downloading ImageNet weights…</small>")
        self.download_button.setEnabled(False)
        self.host.jobs.start(worker, None, error_title=None)
        return worker

    def _on_download_event(self, event: object) -> None:
        from densestudio.ml.events import WeightsDownload

        if isinstance(event, WeightsDownload):
            total = f" of {event.total / 1e6:.0f} MB" if event.total else ""
            self.download_label.setText(f"<small>Downloading {event.filename}: "
                                        f"{event.done / 1e6:.1f} MB{total}</small>")

    def _on_downloaded(self, path: object) -> None:
        self.download_label.setText(f"<small>ImageNet weights saved: {path}</small>")
        if not self.edited:
            self.apply_recommended()

    def _on_download_failed(self, message: str) -> None:
        self.download_label.setText(f"<small>Download failed: {message}</small>")

    def _on_download_done(self) -> None:
        self.download_worker = None
        self._show_download_offer()
        self.download_label.setVisible(True)

    # ================================================================ training
    def problems(self, cfg: TrainConfig) -> list[str]:
        """Why training cannot start (empty = ready): data first, then settings."""
        from densestudio.ml.train import check_trainable

        assert self.project is not None  # only asked while a project is open
        problems = check_trainable(self.project)
        problems += cfg.problems()
        return problems

    def start_training(self) -> Worker | None:
        if self.controller is None or self.running:
            return None
        cfg = self.config()
        problems = self.problems(cfg)
        if problems:
            self._refuse("Cannot start training", problems)
            return None
        return self._launch(cfg, None)

    def resume_run(self, run_id: int) -> Worker | None:
        if self.controller is None or self.running:
            return None
        info = core_runs.get_run(self.controller.project, run_id)
        if not info.resumable:
            self._refuse("Cannot resume", [f"Run #{run_id} is {info.status} and cannot be "
                                           "resumed; start a new run."])
            return None
        self.total_epochs = info.planned_epochs
        return self._launch(None, run_id)

    def _resume_selected(self) -> None:
        run_id = self.runs.selected_run_id()
        if run_id is None:
            candidates = [r for r in self.runs.infos if r.resumable]
            run_id = candidates[0].id if candidates else None
        if run_id is not None:
            self.resume_run(run_id)

    def _refuse(self, title: str, problems: list[str]) -> None:
        text = "\n".join(f"• {p}" for p in problems)
        self._set_message(text, error=True)
        self.host.show_error(title, text)

    def _launch(self, cfg: TrainConfig | None, resume_run_id: int | None) -> Worker:
        self.events_seen = {}
        self.last_outcome = None
        self.run_id = resume_run_id
        if cfg is not None:
            self.total_epochs = cfg.epochs
        self.plots.reset(self.total_epochs or None)
        if resume_run_id is not None:
            assert self.project is not None  # training it
            info = core_runs.get_run(self.project, resume_run_id)
            self.plots.load_history(core_runs.epoch_metrics(self.project, resume_run_id),
                                    self.total_epochs)
            self.plots.truncate_epochs(info.epochs_done)
        worker = Worker(train_job, self.project, cfg, resume_run_id, None, parent=self)
        worker.event.connect(self._on_event)
        worker.finished.connect(self._on_finished)
        worker.failed.connect(self._on_failed)
        worker.done.connect(lambda: self._on_done(worker))
        self._set_message("Preparing images…" if resume_run_id is None else
                          f"Resuming run #{resume_run_id}…")
        self.status.setText("Starting…")
        self.progress.setValue(0)
        self.progress.setFormat("starting")
        self.host.jobs.start(worker, self, error_title=None)
        self._update_buttons()
        return worker

    def cancel_training(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            self.cancel_button.setEnabled(False)
            self.status.setText("Stopping after this step…")

    # ------------------------------------------------------------ events (GUI thread)
    def _on_event(self, event: object) -> None:
        from densestudio.ml import events as ev

        name = type(event).__name__
        self.events_seen[name] = self.events_seen.get(name, 0) + 1
        if isinstance(event, TrainingSteps):
            self.plots.add_steps(event.x, event.loss)
            self._show_step(event.last)
        elif isinstance(event, ev.EpochEnded):
            self.plots.add_epoch(event.epoch, event.val_loss, event.val_acc, event.val_macro_f1,
                                 event.lr)
            self._set_message(epoch_message(event, self.total_epochs))
            self.runs.refresh(select=self.run_id)
        elif isinstance(event, ev.EpochsPlanned):
            self.total_epochs = event.epochs
            self.plots.set_epoch_range(event.epochs)
            budget = (f" to finish in about {formatting.duration(event.budget_s)}"
                      if event.budget_s and not event.over_budget else "")
            self._set_message(f"Run #{event.run_id}: {event.epochs} epochs planned{budget} "
                              f"({event.reason}). You can keep labeling.")
        elif isinstance(event, ev.PreparingData):
            self.progress.setRange(0, max(1, event.total))
            self.progress.setValue(event.done)
            self.progress.setFormat(f"Preparing images {event.done:,} / {event.total:,}")
            self.status.setText(f"Decoding and resizing images once "
                                f"({event.from_disk_cache:,} from the cache)…")
        elif isinstance(event, ev.StartingPointChosen):
            self.start_label.setText(f"<small>Run #{event.run_id}: {event.text}</small>")
        elif isinstance(event, ev.ImagesSkipped):
            self._set_message(f"Warning: {event.count} image(s) could not be read and are left "
                              f"out of this run ({'; '.join(event.examples)}). Missing files "
                              "are flagged in the gallery; File › Relink finds moved ones.")
        elif isinstance(event, ev.WeightsDownload):
            total = f" of {event.total / 1e6:.0f} MB" if event.total else ""
            self.status.setText(f"Downloading {event.filename}: {event.done / 1e6:.1f} MB{total}")
        elif isinstance(event, ev.RunStarted):
            self.run_id = event.run_id
            self.plotted_run = event.run_id
            self.total_epochs = event.total_epochs
            self.steps_per_epoch = event.steps_per_epoch
            self.device_text = event.device
            if event.start_epoch == 0:
                self.plots.reset(event.total_epochs, event.steps_per_epoch)
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(1000 * event.start_epoch / max(1, event.total_epochs)))
            self.progress.setFormat(f"Epoch {event.start_epoch + 1}/{event.total_epochs}")
            resumed = f", resuming after epoch {event.start_epoch}" if event.start_epoch else ""
            self._set_message(f"Run #{event.run_id}: {event.n_train:,} training and "
                              f"{event.n_val:,} validation images on "
                              f"{event.device.upper()}{resumed}. You can keep labeling.")
            self.runs.set_busy_run(event.run_id)
            self.runs.refresh(select=event.run_id)
            self.trainingStarted.emit(event.run_id)
        elif isinstance(event, ev.EvaluationProgress):
            self.progress.setFormat(f"Evaluating {event.subset} {event.done:,} / {event.total:,}")
            self.status.setText("Predicting the validation and test images with the best "
                                "weights…")
        elif isinstance(event, ev.RunFinished):
            from densestudio.ml.operating_point import decision_lines
            from densestudio.ml.summary import long_text, summarize

            early = " (stopped early)" if event.stopped_early else ""
            self.last_outcome = "finished"
            assert self.project is not None  # the run trains in it
            decided = "\n".join(decision_lines(self.project, event.run_id, "test"))
            argmax = f"{long_text(summarize(event.metrics))}. Open it in the Review tab."
            self._set_message(f"Run #{event.run_id} finished{early}.\n{decided}\n"
                              f"By the most likely class: {argmax}" if decided else
                              f"Run #{event.run_id} finished{early}: {argmax}")
        elif isinstance(event, ev.RunCancelled):
            self.last_outcome = "cancelled"
            self._set_message(f"Run #{event.run_id} stopped after epoch {event.epoch}. "
                              "Resume continues from there.")
        elif isinstance(event, ev.RunFailed):
            self.last_outcome = "failed"

    def _show_step(self, b: BatchProgress) -> None:
        total = max(1, self.total_epochs)
        frac = (b.epoch - 1 + b.step / max(1, b.steps)) / total
        self.progress.setRange(0, 1000)
        self.progress.setValue(int(1000 * frac))
        self.progress.setFormat(f"Epoch {b.epoch}/{total} · step {b.step}/{b.steps}")
        self.status.setText(
            f"Epoch {b.epoch} of {total} · loss {b.loss:.3f} · {b.images_per_s:,.0f} images/s"
            f" · ETA {formatting.eta(b.eta_s)} · {self.device_text.upper() or 'CPU'}")

    def _on_finished(self, run_id: int | None) -> None:
        self.run_id = int(run_id) if run_id is not None else None
        if self.last_outcome is None:
            self.last_outcome = "finished"
        if self.last_outcome == "finished":
            self.progress.setValue(self.progress.maximum())
            self.progress.setFormat("Finished")
            self.status.setText("Finished.")
        else:
            self.progress.setFormat("Stopped")
            self.status.setText("Stopped. Press Resume to continue.")

    def _on_failed(self, message: str) -> None:
        self.last_outcome = "failed"
        self.progress.setFormat("Failed")
        self.status.setText("Training failed.")
        self._set_message(message, error=True)
        self.host.show_error("Training failed", message)

    @property
    def worker(self) -> Worker | None:
        """Its running job: one at a time, held by the app's ``JobRunner``."""
        return self.host.jobs.job_of(self)

    def _on_done(self, worker: Worker) -> None:
        if self.worker is not None:  # (the runner lets go of a job before its ``done``)
            return
        self.plots.redraw()
        self.runs.set_busy_run(None)
        if self.controller is not None:
            self.runs.refresh(select=self.run_id)
        self._update_buttons()
        if self.last_outcome == "finished" and self.run_id is not None:
            self.runFinished.emit(self.run_id)
        self.trainingEnded.emit(self.run_id)

    # ------------------------------------------------------------ helpers
    def _on_run_selected(self, run_id: int | None) -> None:
        self._update_buttons()
        if self.running or run_id is None or self.project is None or run_id == self.plotted_run:
            return
        info = self.runs.info(run_id)
        if info is None:
            return
        self.plots.load_history(core_runs.epoch_metrics(self.project, info.id),
                                info.planned_epochs or None)
        self.plotted_run = info.id
        self.status.setText(f"Showing run #{info.id} ({info.shown_status}).")

    def _on_run_updated(self, run_id: int) -> None:
        """A run shown in the plots advanced elsewhere: draw its new epochs."""
        if run_id == self.plotted_run and not self.running:
            self.plotted_run = None
            self._on_run_selected(self.runs.selected_run_id())

    def _set_message(self, text: str, error: bool = False) -> None:
        self.last_message = text
        self.message.setStyleSheet("color: #c62828;" if error else "")
        self.message.setText(text)

    def _update_buttons(self) -> None:
        has = self.controller is not None
        self.train_button.setEnabled(has and not self.running)
        self.cancel_button.setEnabled(self.running)
        info = self.runs.info(self.runs.selected_run_id())
        resumable = info is not None and info.resumable
        self.resume_button.setEnabled(has and not self.running and resumable)
        self.runs.resume_button.setEnabled(has and not self.running and resumable)
