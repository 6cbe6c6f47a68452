"""Live training plots (pyqtgraph): loss per step (raw and smoothed) with validation loss per
epoch, validation accuracy / macro-F1 per epoch, and the learning rate.

Legends are part of each plot's title line (coloured names), so they never cover a curve.
A past run (or a resumed one) has no per-step losses stored: its training loss is drawn per
epoch, as a dashed line through each epoch's mean at the middle of the epoch.

Points go into growing numpy buffers (amortised O(1) appends); a 10 Hz timer pushes the
buffers that changed to the curves with ``setData``. Nothing here calls ``processEvents``;
long runs stay cheap because curves clip to the view and downsample (peak mode).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QTimer
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QVBoxLayout, QWidget

REFRESH_MS = 100
COLORS = {
    "raw": (0, 114, 178, 70),
    "smooth": (0, 114, 178),
    "val_loss": (213, 94, 0),
    "train_epoch": (0, 114, 178),
    "val_acc": (0, 158, 115),
    "val_f1": (204, 121, 167),
    "lr": (86, 86, 86),
}


class Series:
    """A growing (x, y) buffer: appends are amortised O(1); ``view`` costs nothing."""

    def __init__(self, capacity: int = 1024) -> None:
        self._x = np.empty(capacity, dtype=np.float64)
        self._y = np.empty(capacity, dtype=np.float64)
        self.n = 0

    def extend(self, xs: Sequence[float], ys: Sequence[float]) -> None:
        k = len(xs)
        if self.n + k > len(self._x):
            cap = max(2 * len(self._x), self.n + k)
            self._x = np.resize(self._x, cap)
            self._y = np.resize(self._y, cap)
        self._x[self.n : self.n + k] = xs
        self._y[self.n : self.n + k] = ys
        self.n += k

    def clear(self) -> None:
        self.n = 0

    def view(self) -> tuple[np.ndarray, np.ndarray]:
        return self._x[: self.n], self._y[: self.n]

    @property
    def last(self) -> float | None:
        return float(self._y[self.n - 1]) if self.n else None


class Ema:
    """Exponential moving average with bias correction (like TensorBoard's smoothing)."""

    def __init__(self, alpha: float = 0.9) -> None:
        self.alpha = alpha
        self._value = 0.0
        self._t = 0

    def reset(self, alpha: float | None = None) -> None:
        if alpha is not None:
            self.alpha = alpha
        self._value, self._t = 0.0, 0

    def seed(self, value: float) -> None:
        """Continue from ``value`` (as if it were the average so far), without warm-up."""
        self._value, self._t = value, 10**6

    def __call__(self, v: float) -> float:
        if not math.isfinite(v):
            return v
        self._t += 1
        self._value = self.alpha * self._value + (1 - self.alpha) * v
        return self._value / (1 - self.alpha**self._t)


def _pen(key: str, width: float = 2.0) -> pg.QtGui.QPen:
    return pg.mkPen(color=COLORS[key], width=width)


class TrainingPlots(QWidget):
    """Three linked plots whose x axis is the epoch (fractional for steps)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        pal = self.palette()
        fg = pal.color(QPalette.ColorRole.Text)
        bg = pal.color(QPalette.ColorRole.Base)
        self.view = pg.GraphicsLayoutWidget(self)
        self.view.setBackground(bg)
        self.view.ci.setContentsMargins(4, 4, 4, 4)
        self.view.ci.setSpacing(6)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.view)

        self._fg = fg

        def plot(row: int, col: int, title: str, y_label: str, colspan: int = 1) -> pg.PlotItem:
            p = self.view.addPlot(row=row, col=col, colspan=colspan)
            p.setTitle(title, color=fg, size="10pt")
            p.showGrid(x=True, y=True, alpha=0.15)
            p.setLabel("bottom", "epoch", color=fg)
            p.setLabel("left", y_label, color=fg)
            for axis in ("left", "bottom"):
                p.getAxis(axis).setTextPen(QColor(fg))
                p.getAxis(axis).setPen(QColor(fg))
            p.setMenuEnabled(False)
            p.setClipToView(True)
            p.setDownsampling(auto=True, mode="peak")
            return p

        self.loss_plot = plot(0, 0, "Loss", "loss", colspan=2)
        self.acc_plot = plot(1, 0, "Validation accuracy", "%")
        self.lr_plot = plot(1, 1, "Learning rate", "lr")
        # Same epoch range on every plot (set explicitly: pyqtgraph's X-link aligns plots by
        # screen position, which misaligns plots of different widths).
        self.plots = (self.loss_plot, self.acc_plot, self.lr_plot)
        self.acc_plot.setYRange(0, 100, padding=0.02)
        self.lr_plot.getAxis("left").enableAutoSIPrefix(False)

        self.raw_curve = self.loss_plot.plot(pen=_pen("raw", 1.0), name="train (per step)")
        self.smooth_curve = self.loss_plot.plot(pen=_pen("smooth", 2.2), name="train (smoothed)")
        epoch_pen = _pen("train_epoch", 2.0)
        epoch_pen.setStyle(pg.QtCore.Qt.PenStyle.DashLine)
        self.train_epoch_curve = self.loss_plot.plot(
            pen=epoch_pen, symbol="o", symbolSize=5, symbolBrush=COLORS["train_epoch"])
        self.val_loss_curve = self.loss_plot.plot(
            pen=_pen("val_loss", 2.2), symbol="o", symbolSize=6, symbolBrush=COLORS["val_loss"],
            name="validation")
        self.val_acc_curve = self.acc_plot.plot(
            pen=_pen("val_acc", 2.2), symbol="o", symbolSize=6, symbolBrush=COLORS["val_acc"],
            name="accuracy")
        self.val_f1_curve = self.acc_plot.plot(
            pen=_pen("val_f1", 1.6), symbol="t", symbolSize=6, symbolBrush=COLORS["val_f1"],
            name="macro-F1")
        self.lr_curve = self.lr_plot.plot(pen=_pen("lr", 2.0), symbol="o", symbolSize=4,
                                          symbolBrush=COLORS["lr"])

        self.raw = Series(4096)
        self.smooth = Series(4096)
        self.train_epoch = Series(64)
        self.val_loss = Series(64)
        self.val_acc = Series(64)
        self.val_f1 = Series(64)
        self.lr = Series(64)
        self._ema = Ema()
        self._pairs = [
            (self.raw, self.raw_curve), (self.smooth, self.smooth_curve),
            (self.train_epoch, self.train_epoch_curve), (self.val_loss, self.val_loss_curve),
            (self.val_acc, self.val_acc_curve), (self.val_f1, self.val_f1_curve),
            (self.lr, self.lr_curve),
        ]  # fmt: skip
        self._dirty = False
        self._legend_state: tuple[bool, bool] | None = None
        self.titles: dict[str, str] = {}  # plot name -> its title line (with the legend)
        self._set_title(self.acc_plot, "acc", "Validation accuracy",
                        [("val_acc", "accuracy"), ("val_f1", "macro-F1")])
        self._set_title(self.lr_plot, "lr", "Learning rate", [])
        self.redraws = 0
        self._planned: int | None = None
        self._timer = QTimer(self)
        self._timer.setInterval(REFRESH_MS)
        self._timer.timeout.connect(self.redraw)
        self._timer.start()
        self.reset()

    # ------------------------------------------------------------ data in
    def reset(self, total_epochs: int | None = None, steps_per_epoch: int | None = None) -> None:
        for series, _ in self._pairs:
            series.clear()
        # Smooth over ~1/3 of an epoch (between 5 and 50 steps).
        span = 10 if not steps_per_epoch else max(5, min(50, steps_per_epoch // 3))
        self._ema.reset(1.0 - 1.0 / span)
        self.set_epoch_range(total_epochs)
        self.loss_plot.enableAutoRange(axis="y", enable=True)
        self.lr_plot.enableAutoRange(axis="y", enable=True)
        self._dirty = True
        self.redraw()

    def set_epoch_range(self, total_epochs: int | None) -> None:
        """Fix the x axes to the run's planned epochs (None: follow the data)."""
        self._planned = total_epochs
        self._dirty = True
        for p in self.plots:
            if total_epochs:
                p.setXRange(0, total_epochs, padding=0.02)
            p.enableAutoRange(axis="x", enable=not total_epochs)

    def add_steps(self, xs: Sequence[float], losses: Sequence[float]) -> None:
        if not len(xs):
            return
        self.raw.extend(xs, losses)
        self.smooth.extend(xs, [self._ema(v) for v in losses])
        self._dirty = True

    def add_epoch(self, epoch: int, val_loss: float | None, val_acc: float | None,
                  val_f1: float | None, lr: float, train_loss: float | None = None) -> None:
        x = [float(epoch)]
        if train_loss is not None and self.raw.n == 0:  # history without per-step points
            self.train_epoch.extend([epoch - 0.5], [train_loss])  # an epoch's mean: its middle
        if val_loss is not None:
            self.val_loss.extend(x, [val_loss])
        if val_acc is not None:
            self.val_acc.extend(x, [100.0 * val_acc])
        if val_f1 is not None:
            self.val_f1.extend(x, [100.0 * val_f1])
        self.lr.extend(x, [lr])
        self._dirty = True

    def load_history(self, metrics: Sequence, total_epochs: int | None = None) -> None:
        """Show a past run (per-epoch values: ``runs.EpochMetricInfo``)."""
        self.reset(total_epochs)
        for m in metrics:
            self.add_epoch(m.epoch, m.val_loss, m.val_acc, m.val_macro_f1, m.lr, m.train_loss)
        if metrics and math.isfinite(metrics[-1].train_loss):
            self._ema.seed(metrics[-1].train_loss)  # a resumed run's smoothed loss carries on
        self.redraw()

    def truncate_epochs(self, epochs_done: int) -> None:
        """Drop points after ``epochs_done`` (a resumed run repeats the interrupted epoch)."""
        for series, _ in self._pairs:
            x, _y = series.view()
            keep = int(np.searchsorted(x, epochs_done, side="right")) if series.n else 0
            series.n = keep
        self._dirty = True

    # ------------------------------------------------------------ drawing
    def redraw(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        self.redraws += 1
        for series, curve in self._pairs:
            x, y = series.view()
            curve.setData(x, y)
        self._show_axis_values(any(series.n for series, _ in self._pairs))

        live = self.raw.n > 0
        history = self.train_epoch.n > 0
        if (live, history) != self._legend_state:
            self._legend_state = (live, history)
            entries = []
            if live or not history:
                entries += [("raw", "train (per step)"), ("smooth", "train (smoothed)")]
            if history:
                entries.append(("train_epoch", "train (per epoch, mean)"))
            entries.append(("val_loss", "validation"))
            self._set_title(self.loss_plot, "loss", "Loss", entries)

    def _show_axis_values(self, has_data: bool) -> None:
        """No numbers on empty plots: pyqtgraph's default range would label a run that has
        not started with epochs 0.1 to 0.9 (planned epochs and the accuracy plot's 0-100 %
        are real, so they stay)."""
        state = (has_data or bool(self._planned), has_data)
        if state == getattr(self, "_axes_state", None):
            return
        self._axes_state = state
        for plot in self.plots:
            plot.getAxis("bottom").setStyle(showValues=state[0])
        for plot in (self.loss_plot, self.lr_plot):
            plot.getAxis("left").setStyle(showValues=state[1])

    def _set_title(self, plot: pg.PlotItem, key: str, title: str,
                   entries: list[tuple[str, str]]) -> None:
        """The plot's title with its legend: coloured line marks and names, in one line
        above the plot (a legend inside would cover curves)."""
        parts = [f"<b>{title}</b>"]
        for color_key, name in entries:
            r, g, b, *alpha = COLORS[color_key]
            if alpha:  # translucent curve: its colour as it looks on the background
                a = alpha[0] / 255
                base = self.palette().color(QPalette.ColorRole.Base)
                back = (base.red(), base.green(), base.blue())
                r, g, b = (round(c * a + bc * (1 - a))
                           for c, bc in zip((r, g, b), back, strict=True))
            parts.append(f"<span style='color:rgb({r},{g},{b})'>━━</span>&nbsp;{name}")
        text = " &nbsp; ".join(parts)
        self.titles[key] = text
        plot.setTitle(text, color=self._fg, size="9pt")

    @property
    def step_count(self) -> int:
        return self.raw.n

    @property
    def epoch_count(self) -> int:
        return self.val_acc.n
