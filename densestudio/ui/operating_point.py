"""OK/NG operating point: the defect-inspection trade-off of a run, and its threshold.

For projects where one class means "good", a part passes when P(good) >= threshold. The plot
shows, over all thresholds, the miss rate (defective parts that pass) and the false-reject
rate (good parts rejected), from the run's stored validation (or test) predictions. The user
drags the threshold line (or types it), may add an "unsure" band (parts sent to a person),
enters what each error costs to get a suggested threshold, and saves: the point is stored with
the run (``ml.operating_point.save_operating_point``) and used by ``densestudio predict`` and
the exported model.

A miss rate measured on a few dozen defect images is an estimate, so the readout gives the
miss and false-reject rates with exact 95 % intervals and the one-sided upper bound on the
miss rate ("0 of 45 missed: at most 6.4 %"). *Target miss rate* picks the threshold whose
upper bound meets the target (``ml.operating_point.threshold_for_max_miss``), or says that
these defect images cannot show it and how many would be needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QKeyEvent, QPalette
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from densestudio.core import runs as core_runs
from densestudio.core.formatting import html_text
from densestudio.core.stats import images_needed_sentence, upper_bound_one_sided
from densestudio.ml import operating_point as op
from densestudio.runtime.operating_point import OperatingPoint, OperatingPointError
from densestudio.ui.intervals import ci_tip, pct_ci

if TYPE_CHECKING:
    from densestudio.core.store import Project

SUBSETS = (("val", "Validation"), ("test", "Test"))
MISS_COLOR = (213, 94, 0)
REJECT_COLOR = (0, 114, 178)
BAND_COLOR = (230, 159, 0, 50)
OK, WARN, ERROR = "#1b7f3b", "#b26a00", "#c62828"


class _Spin(QDoubleSpinBox):
    """Enter applies what was typed and goes no further: in a dialog it used to press the
    default button too ("Pick threshold" replaced a typed 0.67 with its own choice)."""

    def keyPressEvent(self, event: QKeyEvent) -> None:
        super().keyPressEvent(event)  # interprets the text (editingFinished, valueChanged)
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            event.accept()


def _spin(parent: QWidget, lo: float, hi: float, step: float, decimals: int,
          value: float) -> QDoubleSpinBox:
    spin = _Spin(parent)
    spin.setRange(lo, hi)
    spin.setSingleStep(step)
    spin.setDecimals(decimals)
    spin.setValue(value)
    spin.setKeyboardTracking(False)
    return spin


class OperatingPointPanel(QWidget):
    saved = Signal(int, object)  # run id, OperatingPoint | None (removed)
    changed = Signal(object)  # the OperatingPoint now shown (not yet saved)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.project: Project | None = None
        self.run: core_runs.RunInfo | None = None
        self.class_names: tuple[str, ...] = ()
        self.probs: np.ndarray = np.zeros((0, 0), np.float32)
        self.true = np.zeros(0, np.int64)
        self.p_good = np.zeros(0)
        self.is_good = np.zeros(0, bool)
        self.curve: op.TradeoffCurve | None = None
        self.stored: OperatingPoint | None = None
        self.rates: op.RatesWithIntervals | None = None  # at the threshold shown
        self.last_choice: op.MissTargetChoice | None = None
        self._sync = False
        self._build()

    # ================================================================ construction
    def _build(self) -> None:
        self.good_combo = QComboBox(self)
        self.good_combo.setToolTip("The class that means a good part (OK); all others are "
                                   "defects (NG)")
        self.good_combo.setPlaceholderText("Choose the class that means a good part…")
        self.good_combo.setMinimumContentsLength(24)
        self.subset_combo = QComboBox(self)
        for key, text in SUBSETS:
            self.subset_combo.addItem(text, key)
        self.subset_combo.setToolTip("Pick the threshold on validation images; check it on "
                                     "the test images")
        # 4 decimals: a threshold picked by the miss-rate bound sits just above a defect's
        # P(good) on a 1e-4 grid; rounding it to 3 decimals could let that defect pass.
        self.threshold = _spin(self, 0.0, 1.0, 0.01, 4, 0.5)
        self.threshold.setToolTip("A part passes (OK) when P(good) is at least this")
        self.band_check = QCheckBox("Unsure band", self)
        self.band_check.setToolTip(
            "Parts with P(good) in this band go to a person (UNSURE). Turned on, it starts as "
            f"the band around the threshold that holds {op.UNSURE_SHARE:.0%} of these parts.")
        self.band_low = _spin(self, 0.0, 1.0, 0.01, 3, 0.3)
        self.band_high = _spin(self, 0.0, 1.0, 0.01, 3, 0.7)
        self.cost_miss = _spin(self, 0.0, 1e6, 1.0, 2, 1.0)
        self.cost_miss.setToolTip("What one defective part that passes costs (escape)")
        self.cost_reject = _spin(self, 0.0, 1e6, 1.0, 2, 1.0)
        self.cost_reject.setToolTip("What one good part that is rejected costs (scrap, "
                                    "re-inspection)")
        self.target = _spin(self, 0.01, 50.0, 0.5, 2, 1.0)
        self.target.setSuffix(" %")
        self.target.setToolTip("The largest miss rate the line accepts: the threshold is "
                               "chosen so that, with 95 % confidence, the true miss rate is at "
                               "most this (the upper bound, not the measured rate)")
        self.target_button = QPushButton("Pick threshold", self)
        self.target_button.setToolTip("The threshold with the fewest rejected good parts "
                                      "whose miss-rate upper bound meets the target")
        self.target_status = QLabel(self)
        self.target_status.setWordWrap(True)
        self.target_status.setTextFormat(Qt.TextFormat.RichText)
        self.suggest_button = QPushButton("Suggest threshold", self)
        self.suggest_button.setToolTip("The threshold with the lowest total cost on this data")
        self.save_button = QPushButton("Save with the run", self)
        self.remove_button = QPushButton("Remove", self)
        self.remove_button.setToolTip("Forget this run's operating point")

        top = QHBoxLayout()
        top.addWidget(QLabel("Good class", self))
        top.addWidget(self.good_combo, 1)
        top.addSpacing(12)
        top.addWidget(QLabel("Data", self))
        top.addWidget(self.subset_combo)

        self.plot = pg.PlotWidget(self)
        self.plot.setMinimumHeight(260)
        self._style_plot()
        item = self.plot.getPlotItem()
        item.setLabel("bottom", "Threshold on P(good)")
        item.setLabel("left", "Rate (%)")
        item.showGrid(x=True, y=True, alpha=0.25)
        item.setXRange(0, 1, padding=0.01)
        item.setYRange(0, 100, padding=0.02)
        item.setMouseEnabled(x=False, y=False)
        item.hideButtons()
        # The legend is the title line: inside the plot it covered the miss-rate curve.
        item.setTitle(
            f"<span style='color:rgb{MISS_COLOR}'>━━</span>&nbsp;Miss rate (defects passed)"
            f" &nbsp; <span style='color:rgb{REJECT_COLOR}'>━━</span>&nbsp;False-reject rate "
            f"(good parts rejected) &nbsp; <span style='color:rgb{BAND_COLOR[:3]}'>██</span>"
            "&nbsp;Unsure band (to a person)",
            color=self.palette().color(QPalette.ColorRole.Text), size="9pt")
        self.band_item = pg.LinearRegionItem(values=(0.3, 0.7), brush=pg.mkBrush(*BAND_COLOR),
                                             movable=True)
        self.band_item.setZValue(-10)
        self.band_item.setVisible(False)
        item.addItem(self.band_item)
        self.miss_curve = item.plot([], [], pen=pg.mkPen(MISS_COLOR, width=2.5),
                                    name="Miss rate (defects passed)")
        self.reject_curve = item.plot([], [], pen=pg.mkPen(REJECT_COLOR, width=2.5),
                                      name="False-reject rate (good parts rejected)")
        self.line = pg.InfiniteLine(pos=0.5, angle=90, movable=True,
                                    pen=pg.mkPen((40, 40, 40), width=2),
                                    hoverPen=pg.mkPen((0, 0, 0), width=3),
                                    label="t = {value:.4g}",
                                    labelOpts={"position": 0.95, "color": (40, 40, 40),
                                               "fill": (255, 255, 255, 200)})
        item.addItem(self.line)
        self.miss_dot = pg.ScatterPlotItem(size=9, brush=pg.mkBrush(*MISS_COLOR))
        self.reject_dot = pg.ScatterPlotItem(size=9, brush=pg.mkBrush(*REJECT_COLOR))
        item.addItem(self.miss_dot)
        item.addItem(self.reject_dot)

        point_box = QGroupBox("Decision", self)
        form = QFormLayout(point_box)
        form.addRow("Threshold", self.threshold)
        band = QHBoxLayout()
        band.addWidget(self.band_check)
        band.addWidget(self.band_low)
        band.addWidget(QLabel("–", self))
        band.addWidget(self.band_high)
        band.addStretch(1)
        form.addRow(band)
        cost_box = QGroupBox("Costs (optional)", self)
        cform = QFormLayout(cost_box)
        cform.addRow("A missed defect costs", self.cost_miss)
        cform.addRow("A false reject costs", self.cost_reject)
        cform.addRow(self.suggest_button)
        target_box = QGroupBox("Miss-rate target (95 % confidence)", self)
        tform = QVBoxLayout(target_box)
        trow = QHBoxLayout()
        trow.addWidget(QLabel("Target miss rate ≤", self))
        trow.addWidget(self.target)
        trow.addWidget(self.target_button)
        trow.addStretch(1)
        tform.addLayout(trow)
        tform.addWidget(self.target_status)
        self.readout = QLabel(self)
        self.readout.setTextFormat(Qt.TextFormat.RichText)
        self.readout.setWordWrap(True)
        self.intervals = QLabel(self)
        self.intervals.setTextFormat(Qt.TextFormat.RichText)
        self.intervals.setWordWrap(True)
        self.status = QLabel(self)
        self.status.setWordWrap(True)
        boxes = QHBoxLayout()
        boxes.addWidget(point_box, 1)
        boxes.addWidget(target_box, 2)
        boxes.addWidget(cost_box, 1)
        buttons = QHBoxLayout()
        buttons.addWidget(self.status, 1)
        buttons.addWidget(self.remove_button)
        buttons.addWidget(self.save_button)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.readout)
        layout.addWidget(self.intervals)
        layout.addLayout(boxes)
        layout.addLayout(buttons)

        self.good_combo.currentIndexChanged.connect(lambda _i: self._reload_scores())
        self.subset_combo.currentIndexChanged.connect(lambda _i: self._load_predictions())
        self.threshold.valueChanged.connect(self._on_threshold_spin)
        self.line.sigPositionChanged.connect(self._on_line_moved)
        self.band_check.toggled.connect(self._on_band_toggled)
        self.band_low.valueChanged.connect(self._on_band_spins)
        self.band_high.valueChanged.connect(self._on_band_spins)
        self.band_item.sigRegionChanged.connect(self._on_band_dragged)
        self.cost_miss.valueChanged.connect(lambda _v: self._update_readout())
        self.cost_reject.valueChanged.connect(lambda _v: self._update_readout())
        self.suggest_button.clicked.connect(self.suggest)
        self.target_button.clicked.connect(self.pick_for_target)
        self.target.valueChanged.connect(lambda _v: self._update_target_status())
        self.save_button.clicked.connect(self.save)
        self.remove_button.clicked.connect(self.remove)
        self._update_enabled()

    def _style_plot(self) -> None:
        pal = self.palette()
        self.plot.setBackground(pal.color(QPalette.ColorRole.Base))
        fg = pal.color(QPalette.ColorRole.Text)
        for axis in ("left", "bottom"):
            ax = self.plot.getPlotItem().getAxis(axis)
            ax.setPen(pg.mkPen(QColor(fg)))
            ax.setTextPen(pg.mkPen(QColor(fg)))

    # ================================================================ data
    def set_run(self, project: Project, run_id: int | None, subset: str | None = None) -> None:
        """Show the trade-off of a run (its stored point, if any, is loaded) on ``subset``
        (the split the Review tab shows) when it has predictions, else validation."""
        self.project = project
        self.run = core_runs.get_run(project, run_id) if project and run_id else None
        self.class_names = self.run.class_names if self.run else ()
        self.stored = op.load_operating_point(project, self.run.id) if self.run else None
        self._sync = True
        try:
            self.good_combo.clear()
            self.good_combo.addItems(list(self.class_names))
            # The stored class, else a class whose name means good; else ask (no default:
            # the first class is as likely a defect as anything).
            good = (self.stored.good_class if self.stored else
                    op.guess_good_class(self.class_names))
            self.good_combo.setCurrentIndex(self.good_combo.findText(good) if good else -1)
            if self.run is not None:
                wanted = [s for s in (subset, "val", "test") if s is not None]
                have = next((s for s in wanted
                             if core_runs.prediction_count(project, self.run.id, s) > 0), "test")
                self.subset_combo.setCurrentIndex(self.subset_combo.findData(have))
            if self.stored is not None:
                s = self.stored
                self.threshold.setValue(s.threshold)
                self.cost_miss.setValue(s.cost_miss)
                self.cost_reject.setValue(s.cost_false_reject)
                self.band_check.setChecked(s.unsure_low is not None)
                if s.unsure_low is not None and s.unsure_high is not None:
                    self.band_low.setValue(s.unsure_low)
                    self.band_high.setValue(s.unsure_high)
        finally:
            self._sync = False
        self._load_predictions()
        self._set_status(self._stored_text())

    @property
    def subset(self) -> str:
        return self.subset_combo.currentData()

    def _load_predictions(self) -> None:
        if self._sync:
            return
        if self.run is not None and self.project is not None:
            self.probs, self.true = op.stored_predictions(self.project, self.run.id, self.subset)
        else:
            self.probs, self.true = np.zeros((0, len(self.class_names))), np.zeros(0, np.int64)
        self._reload_scores()

    def _reload_scores(self) -> None:
        if self._sync:
            return
        good = self.good_combo.currentIndex()
        if good < 0 or len(self.true) == 0:
            self.p_good, self.is_good = np.zeros(0), np.zeros(0, bool)
            self.curve = None
        else:
            self.p_good, self.is_good = op.good_scores(self.probs, self.true, good)
            self.curve = op.tradeoff_curve(self.p_good, self.is_good, steps=501)
        if self.curve is not None and not self.band_check.isChecked():
            self._set_band_from_data()  # shown (greyed) before the band is turned on
        if self.curve is not None:
            self.miss_curve.setData(self.curve.thresholds, 100 * self.curve.miss_rate)
            self.reject_curve.setData(self.curve.thresholds, 100 * self.curve.false_reject_rate)
        else:
            self.miss_curve.setData([], [])
            self.reject_curve.setData([], [])
        self._update_enabled()
        self._update_readout()
        self._update_target_status()

    # ================================================================ the point
    def point(self) -> OperatingPoint | None:
        """The operating point the controls describe now."""
        good = self.good_combo.currentText()
        if not good:
            return None
        band = self.band_check.isChecked()
        return OperatingPoint(
            good_class=good, threshold=round(self.threshold.value(), 6),
            unsure_low=round(self.band_low.value(), 6) if band else None,
            unsure_high=round(self.band_high.value(), 6) if band else None,
            cost_miss=self.cost_miss.value(), cost_false_reject=self.cost_reject.value(),
        )  # fmt: skip

    def set_threshold(self, value: float) -> None:
        self.threshold.setValue(float(value))

    def suggest(self) -> float | None:
        """Move the threshold to the lowest-cost one for the entered costs."""
        if self.curve is None:
            return None
        t = op.best_threshold(self.curve, self.cost_miss.value(), self.cost_reject.value())
        self.set_threshold(t)
        self._set_status(f"Suggested: {t:.3f} has the lowest total cost on the "
                         f"{self.subset_combo.currentText().lower()} images.")
        return t

    def pick_for_target(self) -> op.MissTargetChoice | None:
        """Move the threshold to the one whose miss-rate *upper bound* meets the target."""
        if self.curve is None:
            return None
        choice = op.threshold_for_max_miss(self.p_good, self.is_good, self.target.value() / 100)
        self.last_choice = choice
        if choice.threshold is not None:
            self.set_threshold(choice.threshold)
        self._update_target_status(choice)
        return choice

    def _update_target_status(self, choice: op.MissTargetChoice | None = None) -> None:
        """The choice just made, else what these defect images can show at all."""
        target = self.target.value() / 100
        n_bad = int((~self.is_good).sum()) if self.curve is not None else 0
        if self.curve is None:
            self.target_status.setText("")
            return
        needed = images_needed_sentence(target).replace("<=", "≤").replace(">=", "≥")
        if choice is None:
            zero = upper_bound_one_sided(0, n_bad)
            can = zero <= target
            text = (f"{n_bad} defect images: even 0 missed shows at most "
                    f"{zero * 100:.2f} %. {needed[0].upper()}{needed[1:]}.")
            self.target_status.setText(f"<small>{html_text(text)}</small>" if can else
                                       f"<small style='color:{WARN}'>{html_text(text)}</small>")
            return
        if choice.threshold is None:
            self.target_status.setText(f"<span style='color:{ERROR}'>Cannot be met: "
                                       f"{html_text(_nice(choice.message))}</span>")
            return
        band = (" The unsure band leaves its parts out of the rates above."
                if self.band_check.isChecked() else "")
        self.target_status.setText(f"<span style='color:{OK}'>{html_text(_nice(choice.message))}"
                                   f"</span><small>{band}</small>")

    def save(self) -> OperatingPoint | None:
        point = self.point()
        if point is None or self.run is None or self.project is None:
            return None
        try:
            op.save_operating_point(self.project, self.run.id, point)
        except OperatingPointError as exc:
            self._set_status(str(exc), error=True)
            return None
        self.stored = point
        self._set_status("Saved with the run: <i>densestudio predict</i> and exported models "
                         "now answer OK / NG" + (" / UNSURE" if point.unsure_low is not None
                                                 else "") + ".")
        self.saved.emit(self.run.id, point)
        return point

    def remove(self) -> None:
        if self.run is None or self.project is None:
            return
        op.save_operating_point(self.project, self.run.id, None)
        self.stored = None
        self._set_status("Removed: this run has no operating point.")
        self.saved.emit(self.run.id, None)

    # ================================================================ syncing controls
    def _on_threshold_spin(self, value: float) -> None:
        if not self._sync:
            self._sync = True
            self.line.setValue(value)
            self._sync = False
        choice = self.last_choice
        if choice is not None and choice.threshold is not None \
                and abs(choice.threshold - value) > 1e-9:
            self.last_choice = None  # its message was about another threshold
            self._update_target_status()
            self._set_status(f"Threshold {_t(value)} (set by hand; the miss-rate target "
                             "picked another one).")
        self._update_readout()

    def _on_line_moved(self) -> None:
        if self._sync:
            return
        value = float(np.clip(self.line.value(), 0.0, 1.0))
        self._sync = True
        self.threshold.setValue(value)
        self._sync = False
        if value != self.line.value():
            self.line.setValue(value)
        self._update_readout()

    def _set_band_from_data(self) -> None:
        """The default unsure band: ~5 % of these parts around the threshold."""
        band = op.default_unsure_band(self.p_good, self.threshold.value())
        if band is not None:
            sync, self._sync = self._sync, True
            self.band_low.setValue(band[0])
            self.band_high.setValue(band[1])
            self.band_item.setRegion(band)
            self._sync = sync

    def _on_band_toggled(self, on: bool) -> None:
        if on and not self._sync and len(self.p_good):
            self._set_band_from_data()
        self.band_low.setEnabled(on)
        self.band_high.setEnabled(on)
        self.band_item.setVisible(on)
        self._on_band_spins()

    def _on_band_spins(self, *_args: object) -> None:
        if not self._sync:
            self._sync = True
            self.band_item.setRegion((self.band_low.value(), self.band_high.value()))
            self._sync = False
        self._update_readout()

    def _on_band_dragged(self) -> None:
        if self._sync:
            return
        lo, hi = (float(np.clip(v, 0.0, 1.0)) for v in self.band_item.getRegion())
        self._sync = True
        self.band_low.setValue(lo)
        self.band_high.setValue(hi)
        self._sync = False
        self._update_readout()

    # ================================================================ text
    def _update_enabled(self) -> None:
        has = self.curve is not None
        for w in (self.threshold, self.band_check, self.cost_miss, self.cost_reject,
                  self.suggest_button, self.save_button, self.target, self.target_button):
            w.setEnabled(has)
        self.band_low.setEnabled(has and self.band_check.isChecked())
        self.band_high.setEnabled(has and self.band_check.isChecked())
        self.remove_button.setEnabled(self.stored is not None)

    def _update_readout(self) -> None:
        point = self.point()
        t = self.threshold.value()
        if self.curve is None or point is None:
            self.rates = None
            self.intervals.setText("")
            self.miss_dot.setData([], [])
            self.reject_dot.setData([], [])
            what = self.subset_combo.currentText().lower()
            if self.run is None:
                text = "Open a finished run."
            elif point is None:
                text = ("<b>Which class means a good part?</b> Choose it above; every other "
                        "class counts as a defect. (No class name says so, e.g. ok, good, "
                        "pass, defect-free.)")
            else:
                text = (f"No stored {what} predictions for this run. Evaluate it in the "
                        "Review tab first.")
            self.readout.setText(text)
            return
        i = int(np.argmin(np.abs(self.curve.thresholds - t)))
        self.miss_dot.setData([t], [100 * np.nan_to_num(self.curve.miss_rate[i])])
        self.reject_dot.setData([t], [100 * np.nan_to_num(self.curve.false_reject_rate[i])])
        r = op.rates_with_intervals(self.p_good, self.is_good, point)
        self.rates = r
        n = len(self.p_good)

        def part(k: int, total: int, what: str) -> str:
            share = f"{100 * k / total:.1f} %" if total else "—"
            return f"{k} of {total} {what} ({share})"

        cost = r.misses * self.cost_miss.value() + r.false_rejects * self.cost_reject.value()
        unsure = (f" · <b>unsure {part(r.unsure, n, 'parts')}</b>, sent to a person "
                  f"<small>(so the rates count only the {n - r.unsure:,} parts decided OK or "
                  "NG: the denominators shrink as the band widens)</small>"
                  if point.unsure_low is not None else "")
        self.readout.setText(
            f"At P({html_text(point.good_class)}) ≥ <b>{_t(t)}</b> on {n:,} "
            f"{self.subset_combo.currentText().lower()} images: "
            f"<b style='color:rgb{MISS_COLOR}'>missed {part(r.misses, r.n_defective, 'defective')}"
            f"</b> · <b style='color:rgb{REJECT_COLOR}'>rejected "
            f"{part(r.false_rejects, r.n_good, 'good')}</b>{unsure} · total cost {cost:g}")
        self.intervals.setText(self._intervals_html(r))
        self.intervals.setToolTip(
            ci_tip(r.miss, "miss rate") + "\n" + ci_tip(r.false_reject, "false-reject rate")
            + "\nParts in the unsure band go to a person and count in neither rate.")
        self.changed.emit(point)

    def _intervals_html(self, r: op.RatesWithIntervals) -> str:
        """"Miss rate 0.0 % (0.0–7.9), at most 6.4 % with 95 % confidence · false-reject
        rate 2.1 % (0.3–7.4)"."""
        if not r.n_defective:
            miss = "no defect images here"
        else:
            miss = (f"miss rate {pct_ci(r.miss)}, <b>at most {r.miss_upper * 100:.2f} %</b> "
                    "with 95 % confidence")
        reject = (f"false-reject rate {pct_ci(r.false_reject)}" if r.n_good
                  else "no good parts here")
        return (f"<span style='color:rgb{MISS_COLOR}'>{miss}</span> · "
                f"<span style='color:rgb{REJECT_COLOR}'>{reject}</span> "
                "<small>(brackets: exact 95 % intervals)</small>")

    def _stored_text(self) -> str:
        s = self.stored
        if s is None:
            return "This run has no operating point yet."
        band = (f", unsure {s.unsure_low:.3f}–{s.unsure_high:.3f}"
                if s.unsure_low is not None else "")
        return f"Saved: good class '{html_text(s.good_class)}', threshold {_t(s.threshold)}{band}."

    def _set_status(self, text: str, error: bool = False) -> None:
        self.status.setText(f"<span style='color:#c62828'>{text}</span>" if error else text)
        self._update_enabled()


class OperatingPointDialog(QDialog):
    """The panel in a window of its own, opened from the Review tab."""

    def __init__(self, project: Project, run_id: int, parent: QWidget | None = None,
                 subset: str | None = None) -> None:
        super().__init__(parent)
        self.panel = OperatingPointPanel(self)
        self.panel.set_run(project, run_id, subset)
        run = self.panel.run
        self.setWindowTitle(f"OK/NG threshold — run #{run_id}" + (f" {run.name}" if run else ""))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.panel, 1)
        layout.addWidget(buttons)
        self.resize(820, 640)


def _t(threshold: float) -> str:
    """A threshold with 3 decimals, or 4 when it has them (picked by the miss-rate bound)."""
    return f"{threshold:.3f}" if round(threshold, 3) == round(threshold, 6) else f"{threshold:.4f}"




def _nice(text: str) -> str:
    """The core's plain-text sentences with ≤ / ≥ (it writes <= / >= for terminals)."""
    return text.replace("<=", "≤").replace(">=", "≥")
