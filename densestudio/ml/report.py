"""Validation report: one self-contained HTML file a quality engineer can sign off from.

``write_report(project, out, run_id)`` writes one file that opens offline and prints well to
PDF: CSS inline, charts as inline SVG (core/charts.py), images (mistakes, heatmaps) as
``data:`` URIs, nothing loaded from anywhere. Sections, each on its own printed page:

summary - data (classes, counts per split, fingerprint, import sources, label history) -
training settings (config, preprocessing) - training curves - metrics with 95 % intervals
(per-class table, recall forest plot, confusion matrix) - calibration - OK/NG operating
point (costs, miss / false-reject rates with intervals, images needed) - release gate
against the previous approved run - most confident mistakes with heatmaps - the exported
model's parity figures - sign-off records (approvals, hash-chain verification).

The exported-model section reads ``run.extra["last_export"]`` (written by ``record_export``
after ``densestudio export``): ``{"path", "at", "by", "files", "parity"}``; ``parity`` is
any dict of figures (e.g. ONNX vs PyTorch max |dp|, agreement) and is shown as given. When
the exported file still exists, a ``parity`` entry of its metadata is shown too.
"""

from __future__ import annotations

import base64
import io
import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image as PILImage

from densestudio import __version__
from densestudio.core import charts, history, queries, runs, signoff
from densestudio.core.atomic import atomic_output
from densestudio.core.errors import DenseStudioError
from densestudio.core.formatting import percent
from densestudio.core.imaging import ImageDecodeError, load_image
from densestudio.core.progress import CancelToken, EventCallback, Progress, ignore_event
from densestudio.core.stats import Interval, images_needed_sentence, wilson
from densestudio.core.store import Project, current_user, split_leaks, split_settings
from densestudio.ml import operating_point as op

if TYPE_CHECKING:  # the gate is imported when the report asks for it
    from densestudio.ml.gate import GateResult

SECTIONS = (
    ("summary", "Summary"),
    ("data", "Data"),
    ("training", "Training settings"),
    ("curves", "Training curves"),
    ("metrics", "Metrics"),
    ("calibration", "Calibration"),
    ("operating-point", "OK/NG operating point"),
    ("gate", "Release gate"),
    ("mistakes", "Most confident mistakes"),
    ("export", "Exported model"),
    ("records", "Sign-off records"),
)
EXPORT_KEY = "last_export"


class ReportError(DenseStudioError):
    """A report cannot be written (no such run, no predictions and no model)."""


@dataclass(frozen=True)
class ReportOptions:
    subset: str = "test"  # the set the metrics are reported on ("val" if there is no test)
    mistakes: int = 8  # most confident mistakes shown, with heatmaps
    heatmaps: bool = True
    gate: bool = True  # compare with the previous approved run (may predict images)


@dataclass(frozen=True)
class ReportProgress(Progress):
    section: str
    done: int
    total: int


@dataclass(frozen=True)
class ReportWritten:
    path: Path
    run_id: int
    subset: str
    sections: tuple[str, ...]
    size_bytes: int


# ------------------------------------------------------------------ small helpers
def _table(header: Sequence[str], rows: Sequence[Sequence[str]], cls: str = "") -> str:
    """An HTML table; cells are already-escaped HTML."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _kv(rows: Sequence[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{escape(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="kv"><tbody>{body}</tbody></table>'


def _when(dt: datetime | None) -> str:
    return "-" if dt is None else f"{dt:%Y-%m-%d %H:%M} UTC"


def _ci(interval: Interval) -> str:
    return '<span class="ci">' + escape(interval.range_text()) + " %</span>" if interval.n \
        else '<span class="ci">-</span>'


# Blue -> cyan -> green -> yellow -> red, as the app's heatmap overlay (ui/heatmaps.py).
_STOPS = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
_RGB = np.array([[20, 40, 200], [0, 190, 230], [40, 210, 60], [250, 220, 0], [230, 20, 20]],
                dtype=np.float64)
_LUT = np.stack([np.interp(np.linspace(0, 1, 256), _STOPS, _RGB[:, c]) for c in range(3)],
                axis=1).astype(np.uint8)


def overlay_heatmap(img: PILImage.Image, heatmap: np.ndarray) -> PILImage.Image:
    """The image with a [0, 1] heatmap (covering the whole image) laid over it."""
    base = img.convert("RGB")
    h = np.clip(np.nan_to_num(np.asarray(heatmap, dtype=np.float32)), 0.0, 1.0)
    heat = PILImage.fromarray((h * 255).astype(np.uint8), "L").resize(base.size,
                                                                       PILImage.Resampling.BILINEAR)
    idx = np.asarray(heat)
    colour = _LUT[idx].astype(np.float32)
    alpha = (0.85 * (idx / 255.0) ** 0.7 + 0.08)[..., None]
    mixed = np.asarray(base, dtype=np.float32) * (1 - alpha) + colour * alpha
    return PILImage.fromarray(mixed.clip(0, 255).astype(np.uint8), "RGB")


def image_data_uri(img: PILImage.Image, max_side: int = 220) -> str:
    """A JPEG ``data:`` URI of the image, at most ``max_side`` px."""
    img = img.convert("RGB")
    img.thumbnail((max_side, max_side), PILImage.Resampling.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _thumb(path: str, max_side: int = 220) -> PILImage.Image | None:
    try:
        return load_image(Path(path), max_side=max_side * 2)
    except (ImageDecodeError, OSError):
        return None


# ------------------------------------------------------------------ the report
class _Builder:
    def __init__(self, project: Project, run_id: int, options: ReportOptions,
                 on_event: EventCallback, cancel: CancelToken) -> None:
        from densestudio.ml.eval_report import report as eval_report

        self.project, self.run_id, self.options = project, run_id, options
        self.on_event, self.cancel = on_event, cancel
        self.info = runs.get_run(project, run_id)
        self.names = list(self.info.class_names)
        subset = options.subset
        if runs.prediction_count(project, run_id, subset) == 0:
            self._evaluate(subset)
        if runs.prediction_count(project, run_id, subset) == 0 and subset == "test":
            subset = "val"
        if runs.prediction_count(project, run_id, subset) == 0:
            raise ReportError(f"Run {run_id} has no stored predictions for its {subset} set; "
                              f"evaluate it first (densestudio evaluate --run {run_id}).")
        self.subset = subset
        self.rep = eval_report(project, run_id, subset)
        self.preds = [p for p in runs.predictions(project, run_id, subset)
                      if p.true_index is not None]
        self.approvals = signoff.approvals(project, run_id)
        self.verification = signoff.verify_project(project)
        self.gate: GateResult | None = None
        self.gate_error: str | None = None
        self.point = op.load_operating_point(project, run_id)

    def _evaluate(self, subset: str) -> None:
        from densestudio.ml.eval_report import EvaluationError
        from densestudio.ml.evaluate import evaluate_run

        try:
            evaluate_run(self.project, self.run_id, (subset,), cancel=self.cancel)
        except EvaluationError:
            pass  # reported below if nothing can be shown

    # ------------------------------------------------------------ sections
    def summary(self) -> str:
        info, rep = self.info, self.rep
        acc, bal = rep.accuracy_interval(), rep.balanced_accuracy_interval()
        worst = rep.worst_class
        rows = [
            ("Run", escape(f"{info.id}" + (f" - {info.name}" if info.name else ""))),
            ("Trained", f"{_when(info.created_at)} to {_when(info.finished_at)} on "
                        f"{escape(info.device or '?')}"),
            ("Status", self._approval_text()),
            *self._decision_rows(),  # OK/NG decisions lead; argmax figures follow
            (f"Accuracy ({self.subset})", f"<b>{acc.percent()}</b> ({acc.k} of {acc.n})"),
            (f"Balanced accuracy ({self.subset})", f"<b>{bal.percent()}</b>"),
        ]
        if worst is not None:
            ci = rep.recall_interval(self.names.index(worst.name))
            rows.append(("Worst class", f"{escape(worst.name)}: recall {ci.percent()}"))
        if self.gate is not None:
            cls = {"nothing": "warn"}.get(self.gate.outcome, self.gate.outcome)
            rows.append(("Release gate", f'<span class="{cls}">{escape(self.gate.verdict)}'
                                         "</span>"))
        rows.append(("Records", self._verification_text()))
        return _kv(rows)

    def _decision_rows(self) -> list[tuple[str, str]]:
        """Defects passed as good, good parts rejected, sent to a person: what the run's
        OK/NG point decides on this subset; Train's note when validation could not show its
        target."""
        rows: list[tuple[str, str]] = []
        if self.point is not None:
            p_good, is_good = self._ok_ng(self.subset)
            if len(p_good):
                c = op.decision_counts(p_good, is_good, self.point, self.subset)
                passed, rejected, unsure = (escape(line.split(": ", 1)[1])
                                            for line in c.lines())
                rows += [(f"Defects passed as good ({self.subset})", f"<b>{passed}</b>"),
                         ("Good parts rejected", rejected), ("Sent to a person", unsure)]
        record = op.picked_record(self.project, self.run_id)
        if record is not None and not record.get("shown"):
            rows.append(("OK/NG target", f'<span class="warn">'
                                         f"{escape(str(record.get('message')))}</span>"))
        return rows

    def _approval_text(self) -> str:
        if not self.approvals:
            return '<span class="warn">not approved</span>'
        a = self.approvals[-1]
        return (f'<span class="pass">approved</span> by {escape(a.approved_by)} on '
                f"{_when(a.approved_at)}: “{escape(a.why)}”")

    def _verification_text(self) -> str:
        v = self.verification
        if v.ok:
            labels = v.chains[0]
            return (f'<span class="pass">intact</span>: label history ({labels.rows:,} '
                    f"changes) and approvals ({v.chains[1].rows}) verified by their hash chain")
        return (f'<span class="fail">{len(v.problems)} problem(s)</span>: the records were '
                "edited outside DenseStudio (see Sign-off records)")

    def data(self) -> str:
        counts = queries.run_image_counts(self.project, self.run_id)
        colours = {c.name: c.color for c in self.project.classes()}
        rows = []
        for i, name in enumerate(self.names):
            sw = (f'<span class="swatch" style="background:{escape(colours[name])}"></span>'
                  if name in colours else "")
            cells = [counts[(i, sp)] for sp in ("train", "val", "test")]
            rows.append([sw + escape(name), *(f"{n:,}" for n in cells), f"{sum(cells):,}"])
        totals = [sum(counts[(i, sp)] for i in range(len(self.names)))
                  for sp in ("train", "val", "test")]
        rows.append(["<b>all</b>", *(f"<b>{n:,}</b>" for n in totals),
                     f"<b>{sum(totals):,}</b>"])
        out = ["<h3>Images the run used, per class and split</h3>",
               _table(["class", "train", "val", "test", "total"], rows, "num")]
        now = self.project.counts()
        settings = split_settings(self.project)
        fp = str(self.info.metrics.get("data_fingerprint") or "-")
        current = _current_fingerprint(self.project)
        same = ('<span class="pass">the labels and splits are unchanged since</span>'
                if current == fp else
                '<span class="warn">the labels or splits changed since the run</span>')
        out.append(_kv([
            ("Data fingerprint", f"<code>{escape(fp)}</code> ({same})"),
            ("Project now", f"{now.total:,} images, {now.total - now.count(None):,} labeled"),
            ("Test split", "locked" if settings.test_locked else
             '<span class="warn">not locked</span>'),
            ("Must-pass images", f"{len(signoff.golden_ids(self.project)):,}"),
            *self._leak_rows(),
        ]))
        sources = history.import_sources(self.project)
        out.append("<h3>Import sources</h3>")
        if sources:
            out.append(_table(
                ["when", "who", "folders / files", "added", "skipped", "labels"],
                [[_when(x.at), escape(x.who), "<br>".join(escape(p) for p in x.sources),
                  f"{x.added:,}", f"{x.skipped:,}",
                  "from sub-folders" if x.labels_from_subfolders else "-"] for x in sources]))
        else:
            out.append("<p>No imports recorded (the images were added before import "
                       "sources were kept, or by a script).</p>")
        by_how = history.history_summary(self.project)
        since = queries.label_changes_since(self.project, self.info.created_at)
        out.append("<h3>Label history</h3>")
        out.append(_kv([
            ("Label changes recorded", f"{sum(by_how.values()):,} ("
             + ", ".join(f"{escape(k)} {v:,}" for k, v in sorted(by_how.items())) + ")"),
            ("Changes since the run started", f"{since:,}"),
        ]))
        return "\n".join(out)

    def _leak_rows(self) -> list[tuple[str, str]]:
        """Near-identical images across splits, label conflicts, model-made test labels."""
        leaks, model_in_test = split_leaks(self.project)
        spread = (f'<span class="warn">{len(leaks.spanning):,} groups ({leaks.images:,} '
                  f"images) span more than one split, {leaks.touching_test:,} touching the "
                  "test set: the test figures may flatter the model</span>"
                  if leaks.spanning else '<span class="pass">each group shares one split</span>')
        conflicts = (f'<span class="warn">{len(leaks.conflicts):,} groups carry different '
                     "labels</span>" if leaks.conflicts else "none")
        made = (f'<span class="warn">{model_in_test:,} test labels came from a model '
                "(accepted predictions)</span>" if model_in_test else "0 (every test label "
                "was given by a person or a folder)")
        return [("Near-identical / same-name images", spread),
                ("Label conflicts in those groups", conflicts),
                ("Test labels made by a model", made)]

    def training(self) -> str:
        info = self.info
        prep = self._preprocessing()
        m = info.metrics
        rows = [
            ("Architecture", escape(str(info.config.get("arch", "?")))),
            ("Preprocessing", escape(prep)),
            ("Epochs", f"{m.get('epochs_trained', info.epochs_done)} trained, best epoch "
                       f"{info.best_epoch}" + (" (stopped early)" if m.get("stopped_early")
                                               else "")),
            ("Training time", f"{float(m.get('train_seconds') or 0):.0f} s at "
                              f"{float(m.get('train_images_per_s') or 0):.0f} images/s"),
            ("Device", escape(info.device or "?")),
        ]
        config = _table(["setting", "value"],
                        [[escape(k), f"<code>{escape(json.dumps(v))}</code>"]
                         for k, v in sorted(info.config.items())], "config")
        return _kv(rows) + "<h3>All settings</h3>" + config

    def _preprocessing(self) -> str:
        path = self.info.checkpoint_best
        if path and Path(path).is_file():
            from densestudio.core import preprocess
            from densestudio.ml.checkpoint import load_checkpoint

            try:
                return preprocess.from_meta(load_checkpoint(path)["meta"]).describe()
            except Exception as exc:  # a broken checkpoint must not stop it
                return f"unknown (checkpoint unreadable: {exc})"
        return "unknown (the run's model file is gone)"

    def curves(self) -> str:
        epochs = runs.epoch_metrics(self.project, self.run_id)
        if not epochs:
            return "<p>No per-epoch metrics were recorded.</p>"
        xs = [e.epoch for e in epochs]
        best = [charts.RefLine(f"best epoch {self.info.best_epoch}", x=self.info.best_epoch)] \
            if self.info.best_epoch else []
        loss = charts.Chart(
            "Loss per epoch", (
                charts.Series("training loss", xs, [e.train_loss for e in epochs]),
                charts.Series("validation loss", xs, [e.val_loss for e in epochs])),
            x_label="epoch", y_label="loss", refs=tuple(best), integer_x=True)
        acc = charts.Chart(
            "Validation accuracy and macro-F1", (
                charts.Series("validation accuracy", xs, [e.val_acc for e in epochs]),
                charts.Series("validation macro-F1", xs, [e.val_macro_f1 for e in epochs],
                              dashed=True)),
            x_label="epoch", y_label="", percent_y=True, refs=tuple(best), integer_x=True)
        lr = charts.Chart("Learning rate", (charts.Series("learning rate", xs,
                                                          [e.lr for e in epochs]),),
                          x_label="epoch", height=200, integer_x=True)
        return "\n".join(charts.render(c) for c in (loss, acc, lr))

    def metrics(self) -> str:
        rep = self.rep
        acc, bal = rep.accuracy_interval(), rep.balanced_accuracy_interval()
        out = [f"<p>On the <b>{self.subset}</b> set ({rep.n:,} images). Intervals are 95 %: "
               "exact (Clopper-Pearson) for rates; for balanced accuracy the mean of the "
               "classes' exact bounds at a Bonferroni-adjusted level.</p>",
               _kv([("Accuracy", acc.percent()), ("Balanced accuracy", bal.percent()),
                    ("Macro-F1", percent(rep.macro_f1)),
                    ("Loss", f"{rep.loss:.4f}" if rep.loss is not None else "-")])]
        rows, forest = [], []
        for i, c in enumerate(rep.per_class):
            p_ci, r_ci = rep.precision_interval(i), rep.recall_interval(i)
            few = ' <span class="warn">(few images)</span>' if c.support < 10 else ""
            rows.append([escape(c.name) + few, percent(c.precision), _ci(p_ci), percent(c.recall),
                         _ci(r_ci), percent(c.f1), f"{c.support:,}"])
            if r_ci.n:
                forest.append(charts.ForestRow(c.name, r_ci.estimate, r_ci.low, r_ci.high,
                                               f"({r_ci.k} of {r_ci.n})"))
        out.append("<h3>Per class</h3>")
        out.append(_table(["class", "precision", "95 % CI", "recall", "95 % CI", "F1",
                           "images"], rows, "num"))
        if forest:
            out.append(charts.forest("Recall per class with 95 % intervals", forest))
        out.append("<h3>Confusion matrix</h3>")
        out.append(_confusion_html(self.names, rep.confusion))
        other = "val" if self.subset == "test" else "test"
        if runs.prediction_count(self.project, self.run_id, other):
            from densestudio.ml.eval_report import report as eval_report

            o = eval_report(self.project, self.run_id, other)
            out.append(f"<p>On the {other} set ({o.n:,} images): accuracy "
                       f"{o.accuracy_interval().percent()}, balanced accuracy "
                       f"{o.balanced_accuracy_interval().percent()}.</p>")
        return "\n".join(out)

    def calibration(self) -> str:
        conf = np.array([p.confidence for p in self.preds])
        right = np.array([p.pred_index == p.true_index for p in self.preds])
        edges = np.linspace(0, 1, 11)
        xs, ys, lo, hi, rows = [], [], [], [], []
        ece = 0.0
        for a, b in itertools.pairwise(edges):
            sel = (conf >= a) & ((conf < b) | (b == 1.0))
            n = int(sel.sum())
            if not n:
                continue
            k = int(right[sel].sum())
            ci = wilson(k, n)
            xs.append(float(conf[sel].mean()))
            ys.append(k / n)
            lo.append(ci.low)
            hi.append(ci.high)
            ece += n / len(conf) * abs(k / n - float(conf[sel].mean()))
            rows.append([f"{a * 100:.0f}-{b * 100:.0f} %", f"{n:,}", percent(k / n),
                         percent(float(conf[sel].mean()))])
        chart = charts.Chart(
            "Reliability: accuracy vs. confidence", (
                charts.Series("perfectly calibrated", [0, 1], [0, 1], color="#999999",
                              dashed=True),
                charts.Series("this model (95 % Wilson band)", xs, ys, band=(lo, hi),
                              points=True)),
            x_label="confidence of the predicted class", y_label="accuracy",
            x_range=(0.0, 1.0), y_range=(0.0, 1.0), percent_y=True, height=320)
        return (f"<p>Expected calibration error {percent(ece)}: when the model says 90 %, it is "
                "right about that often if the dots lie on the diagonal.</p>"
                + charts.render(chart)
                + _table(["confidence", "images", "accuracy", "mean confidence"], rows, "num"))

    def _ok_ng(self, subset: str) -> tuple[np.ndarray, np.ndarray]:
        good = self.point.good_class if self.point else None
        if good is None or good not in self.names:
            return np.zeros(0), np.zeros(0, dtype=bool)
        probs, true = op.stored_predictions(self.project, self.run_id, subset)
        if not len(true):
            return np.zeros(0), np.zeros(0, dtype=bool)
        return op.good_scores(probs, true, self.names.index(good))

    def operating_point(self) -> str:
        point = self.point
        if point is None:
            guess = op.suggest_good_class(self.names)
            hint = (f" A class is called “{escape(guess)}”: set a threshold with "
                    "<code>densestudio operating-point --good</code> to judge parts OK/NG."
                    if guess else "")
            return f"<p>This run has no OK/NG operating point.{hint}</p>"
        band = (f", unsure (sent to a person) when {point.unsure_low:g} &le; P &lt; "
                f"{point.unsure_high:g}" if point.unsure_low is not None else "")
        out = [f"<p>A part is <b>OK</b> when P({escape(point.good_class)}) &ge; "
               f"<b>{point.threshold:g}</b>, else NG{band}. Costs: a missed defect "
               f"{point.cost_miss:g}, a rejected good part {point.cost_false_reject:g}.</p>"]
        rows = []
        curve_subset = None
        for subset in ("val", "test"):
            p_good, is_good = self._ok_ng(subset)
            if not len(p_good):
                continue
            curve_subset = curve_subset or subset
            r = op.rates_with_intervals(p_good, is_good, point)
            cost = (r.misses * point.cost_miss + r.false_rejects * point.cost_false_reject)
            rows.append([subset, f"{r.misses} of {r.n_defective}", r.miss.percent(),
                         f"<b>{percent(r.miss_upper)}</b>",
                         f"{r.false_rejects} of {r.n_good}", r.false_reject.percent(),
                         f"{r.unsure}", f"{cost / max(len(p_good), 1) * 1000:,.0f}"])
        if not rows:
            return out[0] + "<p>No stored predictions to measure it on.</p>"
        out.append(_table(["set", "missed defects", "miss rate (95 % CI)",
                           "miss rate at most (95 %, one-sided)", "rejected good parts",
                           "false-reject rate (95 % CI)", "unsure", "cost per 1000 parts"],
                          rows, "num"))
        out.append("<p>The threshold was chosen on the validation set; the test set is the "
                   "independent check. " + escape(images_needed_sentence(0.01)).capitalize()
                   + ".</p>")
        p_good, is_good = self._ok_ng(curve_subset)  # type: ignore[arg-type]
        ts = np.round(np.linspace(0, 1, 101), 6)
        miss, frr = [], []
        for t in ts:
            r = op.rates_with_intervals(p_good, is_good, float(t))
            miss.append((r.miss.estimate, wilson(r.misses, r.n_defective)))
            frr.append((r.false_reject.estimate, wilson(r.false_rejects, r.n_good)))
        chart = charts.Chart(
            f"Missed defects vs. rejected good parts ({curve_subset} set)", (
                charts.Series("miss rate", ts, [m for m, _ in miss],
                              band=([w.low for _, w in miss], [w.high for _, w in miss]),
                              color="#d55e00"),
                charts.Series("false-reject rate", ts, [f for f, _ in frr],
                              band=([w.low for _, w in frr], [w.high for _, w in frr]),
                              color="#0072b2")),
            x_label=f"threshold on P({point.good_class})", y_label="rate",
            x_range=(0.0, 1.0), y_range=(0.0, 1.0), percent_y=True,
            refs=(charts.RefLine(f"threshold {point.threshold:g}", x=point.threshold),))
        out.append(charts.render(chart))
        return "\n".join(out)

    def gate_section(self) -> str:
        if self.gate_error:
            return f"<p>The gate could not be run: {escape(self.gate_error)}</p>"
        g = self.gate
        if g is None:
            return "<p>Not run for this report.</p>"
        cls = {"nothing": "warn"}.get(g.outcome, g.outcome)
        out = [f'<p class="verdict {cls}">{escape(g.verdict)}</p>',
               f"<p>{len(g.images):,} images: {g.n_test:,} of the test split and "
               f"{g.n_golden:,} must-pass images, judged on their current labels.</p>"]
        out += [f'<p class="warn">Warning: {escape(w)}</p>' for w in g.warnings]
        if g.metrics:
            out.append(_table(
                ["metric (test split)", "this run", "approved run", "change"],
                [[escape(m.name), m.candidate.percent(),
                  m.against.percent() if m.against else "-",
                  f"{m.delta * 100:+.1f} points" if m.delta is not None else "-"]
                 for m in g.metrics], "num"))
        if g.against is not None:
            out.append(f"<p>{len(g.newly_wrong)} newly wrong, {len(g.newly_right)} newly "
                       f"right (exact McNemar one-sided p = {g.mcnemar_p:.3g}).</p>")
        for title, items in (("Newly wrong", g.newly_wrong),
                             ("Must-pass images this run gets wrong", g.golden_failures),
                             ("Largest confidence drops", g.confidence_drops),
                             ("Newly right", g.newly_right)):
            if items:
                out.append(f"<h3>{title}</h3>")
                out.append(self._gallery(
                    [(i.image_id, i.path, None,
                      f"is <b>{escape(i.true_class)}</b>; this run: "
                      f"{escape(i.candidate_pred)} ({i.candidate_p_true * 100:.0f} % true)"
                      + (f"; approved: {escape(i.against_pred)} "
                         f"({i.against_p_true * 100:.0f} % true)"
                         if i.against_pred is not None and i.against_p_true is not None
                         else "")) for i in items[:8]]))
        return "\n".join(out)

    def mistakes(self) -> str:
        wrong = sorted((p for p in self.preds if p.pred_index != p.true_index),
                       key=lambda p: (-p.confidence, p.image_id))[: self.options.mistakes]
        if not wrong:
            return f"<p>No mistakes on the {self.subset} set.</p>"
        explainer, note = None, ""
        if self.options.heatmaps:
            from densestudio.ml.explain import ExplainError, load_explainer

            try:
                explainer = load_explainer(self.project, self.run_id)
            except ExplainError as exc:
                note = f"<p>No heatmaps: {escape(str(exc))}</p>"
        current = {i.id: i for i in self.project.images_by_ids([p.image_id for p in wrong])}
        names_now = {c.id: c.name for c in self.project.classes()}
        items = []
        for n, p in enumerate(wrong):
            self.cancel.raise_if_cancelled()
            self.on_event(ReportProgress("mistakes", n, len(wrong)))
            info = current.get(p.image_id)
            if info is None:
                continue
            heat = None
            if explainer is not None:
                from densestudio.ml.explain import ExplainError

                try:
                    heat = explainer.explain(p.image_id).heatmap
                except ExplainError:
                    heat = None
            # self.preds keeps only predictions with a true_index
            caption = (f"is <b>{escape(self.names[p.true_index])}</b>, predicted "  # type: ignore[index]
                       f"<b>{escape(self.names[p.pred_index])}</b> "
                       f"({p.confidence * 100:.0f} %)")
            now = names_now.get(info.label_id) if info.label_id is not None else None
            if now != self.names[p.true_index]:  # type: ignore[index]  # as above
                caption += f'<br><span class="warn">relabeled since: {escape(now or "none")}'\
                           "</span>"
            items.append((p.image_id, info.path, heat, caption))
        return (note + "<p>Sorted by the model's confidence in the wrong class: these cost the "
                "most trust. Left: the image; right: where the model looked for the predicted "
                "class (Layer-CAM).</p>" + self._gallery(items))

    def _gallery(self, items: list[tuple[int, str, np.ndarray | None, str]]) -> str:
        cards = []
        for image_id, path, heat, caption in items:
            img = _thumb(path)
            pics = ""
            if img is None:
                pics = '<div class="missing">image file not readable</div>'
            else:
                pics = f'<img src="{image_data_uri(img)}" alt="image {image_id}">'
                if heat is not None:
                    pics += (f'<img src="{image_data_uri(overlay_heatmap(img, heat))}" '
                             f'alt="heatmap of image {image_id}">')
            cards.append(f'<figure class="card">{pics}<figcaption>{caption}<br>'
                         f'<span class="path">#{image_id} {escape(Path(path).name)}</span>'
                         "</figcaption></figure>")
        return '<div class="gallery">' + "".join(cards) + "</div>"

    def export(self) -> str:
        last = self.info.extra.get(EXPORT_KEY)
        if not last:
            return ("<p>This run has no recorded export. After an export (File › Export "
                    "Model… or <code>densestudio export</code>) the file, its date and its "
                    "parity figures are listed here.</p>")
        rows = [("File", escape(str(last.get("path", "?")))),
                ("Exported", escape(str(last.get("at", "?"))) + " by "
                 + escape(str(last.get("by", "?"))))]
        files = last.get("files") or []
        if files:
            rows.append(("Files", "<br>".join(escape(str(f)) for f in files)))
        rows.append(("From", escape(str(last.get("via", "the command line")))))
        check = last.get("check")
        if isinstance(check, dict):
            rows.append(("Checked (the file reloaded, sample images predicted)",
                         f"{check.get('matched', 0)} of {check.get('total', 0)} match their "
                         f"labels, {check.get('errors', 0)} unreadable "
                         f"({escape(str(check.get('at', '?')))})"))
        out = [_kv(rows)]
        parity = dict(last.get("parity") or {})
        path = Path(str(last.get("path", "")))
        file_meta: dict[str, Any] = {}
        if path.is_file():
            try:
                from densestudio.ml.export import read_metadata

                file_meta = read_metadata(path)
                parity = {**(file_meta.get("parity") or {}), **parity}
            except Exception:  # another file now, or a format we cannot read
                pass
        if parity:
            out.append("<h3>Parity of the exported model</h3>")
            out.append(_kv([(str(k), escape(json.dumps(v) if not isinstance(v, str) else v))
                            for k, v in parity.items()]))
        else:
            out.append("<p>The export recorded no parity figures.</p>")
        out.append(self._frame_checks(file_meta.get("frame_checks")))
        return "\n".join(out)

    def _frame_checks(self, entry: object) -> str:
        """The frame-check ranges the exported file carries (or the run's own)."""
        from densestudio.ml.frame_ranges import EXTRA_RANGES
        from densestudio.runtime.frame_checks import NAMES, describe

        entry = entry or self.info.extra.get(EXTRA_RANGES)
        head = "<h3>Frame checks</h3>"
        if not isinstance(entry, dict):
            return head + ("<p>The exported file has no frame checks (made before they "
                           "existed): black, blown-out or blurred frames are judged.</p>")
        by_class = entry.get("by_class") or {}
        lines = [f"<p>A frame outside the ranges of every class is UNSURE with the reason "
                 f"(too dark, overexposed, out of focus, flat, unlike the training images), "
                 f"whatever the model says. Measured on {int(entry.get('n', 0)):,} training "
                 f"images; over all of them:</p>",
                 "<ul>" + "".join(f"<li>{escape(t)}</li>" for t in describe(entry)) + "</ul>"]
        if by_class:
            stats = list(NAMES)
            rows = [[escape(str(name))] + [
                "{:.4g} .. {:.4g}".format(*box[k]) if k in box else "" for k in stats]
                for name, box in by_class.items()]
            lines.append(_table(["class", *(escape(NAMES[k]) for k in stats)], rows))
        return head + "".join(lines)

    def records(self) -> str:
        out = ["<h3>Approvals of this run</h3>"]
        if self.approvals:
            out.append(_table(["when", "by", "why", "data fingerprint", "record hash"],
                              [[_when(a.approved_at), escape(a.approved_by), escape(a.why),
                                f"<code>{escape(a.data_fingerprint)}</code>",
                                f"<code>{a.hash[:16]}</code>"] for a in self.approvals]))
        else:
            out.append("<p>None yet: <code>densestudio approve P --run "
                       f"{self.run_id} --why \"...\"</code> records one.</p>")
        everything = signoff.approvals(self.project)
        if everything:
            out.append("<h3>All approvals in this project</h3>")
            out.append(_table(["when", "run", "by", "why"],
                              [[_when(a.approved_at), f"{a.run_id}", escape(a.approved_by),
                                escape(a.why)] for a in everything[-10:]]))
        out.append("<h3>Hash-chain verification</h3>")
        rows = []
        for c in self.verification.chains:
            state = ('<span class="pass">intact</span>' if c.ok else
                     f'<span class="fail">{len(c.problems)} problem(s)</span>')
            rows.append([escape(c.chain), f"{c.rows:,}", state, f"<code>{c.head_hash}</code>"])
        out.append(_table(["record", "rows", "state", "newest hash (write it down)"], rows))
        if not self.verification.ok:
            out.append("<ul>" + "".join(f"<li>{escape(p)}</li>"
                                         for p in self.verification.problems[:50]) + "</ul>")
        return "\n".join(out)

    # ------------------------------------------------------------ page
    def html(self) -> str:
        if self.options.gate:
            from densestudio.ml.gate import GateError, compare_runs_for_gate

            self.on_event(ReportProgress("gate", 0, 1))
            try:
                self.gate = compare_runs_for_gate(self.project, self.run_id, None,
                                                  on_event=self.on_event, cancel=self.cancel)
            except GateError as exc:
                self.gate_error = str(exc)
        makers: dict[str, Callable[[], str]] = {
            "summary": self.summary, "data": self.data, "training": self.training,
            "curves": self.curves, "metrics": self.metrics, "calibration": self.calibration,
            "operating-point": self.operating_point, "gate": self.gate_section,
            "mistakes": self.mistakes, "export": self.export, "records": self.records,
        }  # fmt: skip
        parts = []
        for n, (key, title) in enumerate(SECTIONS):
            self.cancel.raise_if_cancelled()
            self.on_event(ReportProgress(key, n, len(SECTIONS)))
            parts.append(f'<section id="{key}"><h2>{escape(title)}</h2>\n{makers[key]()}'
                         "</section>")
        nav = " · ".join(f'<a href="#{k}">{escape(t)}</a>' for k, t in SECTIONS)
        name = escape(self.project.path.name)
        now = datetime.now(timezone.utc)
        return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
                f"<title>Validation report: {name}, run {self.run_id}</title>"
                f"<style>{CSS}</style></head><body>"
                f"<header><h1>Validation report</h1><p class=\"sub\">{name} · run "
                f"{self.run_id} · written {now:%Y-%m-%d %H:%M} UTC by "
                f"{escape(current_user())} with DenseStudio {escape(__version__)}</p>"
                f"<nav>{nav}</nav></header>"
                + "\n".join(parts)
                + "<footer>This file is self-contained: it loads nothing from the network and "
                  "prints to PDF from any browser (one section per page).</footer>"
                  "</body></html>")


def _confusion_html(names: Sequence[str], cm: Sequence[Sequence[int]]) -> str:
    """Rows = true class, columns = predicted; cells shaded by the row's share."""
    head = "".join(f'<th class="pred">{escape(n)}</th>' for n in names)
    body = []
    for i, (name, row) in enumerate(zip(names, cm, strict=False)):
        total = sum(row) or 1
        cells = []
        for j, v in enumerate(row):
            share = v / total
            hue = "0, 158, 115" if i == j else "213, 94, 0"
            alpha = 0.08 + 0.8 * share if v else 0.0
            colour = "#fff" if alpha > 0.55 else "#222"
            cells.append(f'<td style="background: rgba({hue}, {alpha:.2f}); color: {colour}" '
                         f'title="{share * 100:.1f} % of {escape(name)}">{v}</td>')
        body.append(f"<tr><th>{escape(name)}</th>{''.join(cells)}</tr>")
    return (f'<table class="confusion"><thead><tr><th>true \\ predicted</th>{head}</tr>'
            f"</thead><tbody>{''.join(body)}</tbody></table>")


def _current_fingerprint(project: Project) -> str:
    """The fingerprint the project's labels and splits would give a new run now."""
    from densestudio.ml.data import fingerprint

    names, rows = runs.current_label_rows(project)
    hashes = queries.content_hashes(project)
    return fingerprint([(hashes[i], names[c], sp) for i, c, sp in rows])


CSS = """
:root { --fg: #1d232a; --muted: #5b6570; --line: #d9dee3; --pass: #007a4d; --fail: #b3261e;
        --warn: #9a5b00; }
* { box-sizing: border-box; -webkit-print-color-adjust: exact; print-color-adjust: exact; }
body { font-family: "DejaVu Sans", "Segoe UI", system-ui, sans-serif; color: var(--fg);
       max-width: 1000px; margin: 0 auto; padding: 24px; font-size: 14px; line-height: 1.45; }
h1 { margin: 0 0 4px; font-size: 26px; }
h2 { border-bottom: 2px solid var(--fg); padding-bottom: 4px; margin-top: 36px; }
h3 { margin: 22px 0 8px; font-size: 16px; }
.sub, footer, .path, .ci { color: var(--muted); }
.ci { font-size: 12px; white-space: nowrap; }
nav { margin: 10px 0 0; font-size: 13px; }
nav a { color: #0b5cad; text-decoration: none; }
table { border-collapse: collapse; margin: 8px 0 14px; }
th, td { border: 1px solid var(--line); padding: 4px 8px; text-align: left;
         vertical-align: top; }
thead th { background: #eef1f4; }
table.kv th { background: #f5f7f9; width: 230px; font-weight: 600; }
table.num td:not(:first-child) { text-align: right; }
table.confusion td { text-align: center; min-width: 46px; font-variant-numeric: tabular-nums; }
table.confusion th.pred { writing-mode: vertical-rl; transform: rotate(180deg);
                          max-height: 140px; }
table.config td, table.config th { font-size: 12px; padding: 2px 6px; }
code { font-family: "DejaVu Sans Mono", monospace; font-size: 12px; word-break: break-all; }
.swatch { display: inline-block; width: 11px; height: 11px; margin-right: 6px;
          border: 1px solid #0003; vertical-align: -1px; }
.pass { color: var(--pass); font-weight: 600; }
.fail { color: var(--fail); font-weight: 600; }
.warn { color: var(--warn); }
p.verdict { font-size: 17px; padding: 8px 12px; border-left: 5px solid currentColor;
            background: #f6f7f8; }
svg.chart { width: 100%; max-width: 680px; height: auto; display: block; margin: 8px 0 18px; }
svg .chart-title { font-size: 14px; font-weight: 600; fill: var(--fg); }
svg .tick, svg .legend, svg .ref { font-size: 11px; fill: var(--muted); }
svg .axis { font-size: 12px; fill: var(--fg); }
.gallery { display: flex; flex-wrap: wrap; gap: 12px; }
figure.card { margin: 0; width: 300px; border: 1px solid var(--line); padding: 6px;
              break-inside: avoid; page-break-inside: avoid; }
figure.card img { width: 140px; height: 140px; object-fit: contain; background: #eee; }
figure.card img + img { margin-left: 6px; }
figcaption { font-size: 12px; margin-top: 4px; }
.missing { width: 140px; height: 140px; background: #eee; color: var(--muted);
           display: flex; align-items: center; justify-content: center; font-size: 12px; }
footer { margin-top: 40px; font-size: 12px; border-top: 1px solid var(--line);
         padding-top: 8px; }
@page { size: A4; margin: 14mm 12mm; }
@media print {
  body { max-width: none; padding: 0; font-size: 11.5px; }
  nav { display: none; }
  section { break-before: page; page-break-before: always; }
  section#summary { break-before: auto; page-break-before: auto; }
  h2 { margin-top: 0; }
  tr, figure.card, svg.chart { break-inside: avoid; page-break-inside: avoid; }
  h2, h3 { break-after: avoid; page-break-after: avoid; }
}
"""


# ------------------------------------------------------------------ entry points
def build_report_html(
    project: Project, run_id: int, options: ReportOptions = ReportOptions(),
    on_event: EventCallback = ignore_event, cancel: CancelToken | None = None,
) -> str:
    """The report of ``run_id`` as one HTML string."""
    return _Builder(project, run_id, options, on_event, cancel or CancelToken()).html()


def write_report(
    project: Project, out: str | Path, run_id: int,
    options: ReportOptions = ReportOptions(), on_event: EventCallback = ignore_event,
    cancel: CancelToken | None = None,
) -> ReportWritten:
    """Write the report to ``out`` atomically (a crash never leaves half a file)."""
    out = Path(out)
    if out.is_dir():  # a folder: the report goes inside it, as export does with models
        out = out / f"{project.name}-run{run_id}-report.html"
    if out.suffix.lower() not in (".html", ".htm"):
        out = out.with_suffix(out.suffix + ".html") if out.suffix else out.with_suffix(".html")
    project.refuse_overwriting(out)  # before the work, not after it
    builder = _Builder(project, run_id, options, on_event, cancel or CancelToken())
    html = builder.html()
    with atomic_output(out, "w", encoding="utf-8") as f:
        f.write(html)
    return ReportWritten(out, run_id, builder.subset, tuple(k for k, _ in SECTIONS),
                         len(html.encode("utf-8")))


def record_export_check(project: Project, run_id: int, path: str | Path, matched: int,
                        total: int, errors: int) -> None:
    """Add what *Check it* found to the run's export record (when it is about that file)."""
    last = runs.get_run(project, run_id).extra.get(EXPORT_KEY)
    if not isinstance(last, dict) or last.get("path") != str(Path(path).absolute()):
        return
    last["check"] = {"matched": matched, "total": total, "errors": errors,
                     "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    runs.update_run_extra(project, run_id, **{EXPORT_KEY: last})


def record_export(project: Project, run_id: int, path: str | Path,
                  files: Sequence[str | Path] = (), parity: dict[str, Any] | None = None,
                  via: str = "the command line") -> None:
    """Remember a successful export in the run (``extra["last_export"]``) for the report;
    parity figures come from ``parity`` or, if absent, the exported file's metadata."""
    path = Path(path)
    if parity is None:
        try:
            from densestudio.ml.export import read_metadata

            parity = read_metadata(path).get("parity")
        except Exception:  # the record is a courtesy; never fail an export
            parity = None
    record = {
        "path": str(path.absolute()),
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "by": current_user(),
        "files": [str(Path(f).absolute()) for f in files] or [str(path.absolute())],
        "parity": parity,
        "via": via,
    }
    runs.update_run_extra(project, run_id, **{EXPORT_KEY: record})
