"""The Review tab's summary: the header led by balanced accuracy and the worst class (or the
OK/NG point's decisions), the figures after relabeling, split leaks; the matrix and the
per-class table. A mixin of ``ReviewPanel``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from densestudio.core.formatting import html_text
from densestudio.core.formatting import percent as pct
from densestudio.core.stats import clopper_pearson
from densestudio.ml import summary
from densestudio.ui.intervals import ci_range, ci_tip, pct_ci
from densestudio.ui.review_base import ReviewBase
from densestudio.ui.review_parts import SUBSETS, WARN_COLOR, table_item, too_few
from densestudio.ui.runs_panel import run_title

if TYPE_CHECKING:
    from densestudio.ml.eval_report import EvalReport


class ReviewHeader(ReviewBase):
    """The summary, matrix and per-class table of ``ReviewPanel``."""

    def _show_report(self) -> None:
        rep = self.report
        name = dict(SUBSETS)[self.subset].lower()
        if rep is None:
            self.matrix.set_matrix([], [])
            self.per_class.setRowCount(0)
            status = self.run.status if self.run else ""
            can = self.run is not None and bool(self.run.checkpoint_best)
            self.summary.setText(
                f"<b>{run_title(self.run) if self.run else 'This run'}</b> has no stored "
                f"predictions for the {name} set"
                + (" (the run did not finish)." if status != "finished" else ".")
                + (" Evaluate it to see the confusion matrix." if can else ""))
            self.evaluate_button.setVisible(can)
            self.gallery.empty_text = "No predictions to show."
            return
        self.evaluate_button.hide()
        self.summary.setText(self._header_html(rep, name))
        self.matrix.set_matrix(rep.class_names, rep.confusion)
        self.per_class.setRowCount(len(rep.per_class))
        for row, c in enumerate(rep.per_class):
            precision, recall = rep.precision_interval(row), rep.recall_interval(row)
            values = (c.name, pct_ci(precision, unit=False), pct_ci(recall, unit=False),
                      f"{c.f1 * 100:.1f}", f"{c.support:,}")
            tips = (c.name, ci_tip(precision, f"precision of {c.name}"),
                    ci_tip(recall, f"recall of {c.name}"), "", "")
            for col, text in enumerate(values):
                item = table_item(text, right=col > 0)
                if tips[col]:
                    item.setToolTip(tips[col])
                self.per_class.setItem(row, col, item)

    def _header_html(self, rep: EvalReport, name: str) -> str:
        """Balanced accuracy and the worst class first (accuracy hides a class that is never
        found); a warning for classes too small to judge. With an OK/NG point, its
        decisions lead."""
        assert self.run is not None  # ``rep`` is one of its reports
        s = summary.summarize({}, rep, self.subset)  # the figures of what is shown
        loss = f" · loss {rep.loss:.3f}" if rep.loss is not None else ""
        cfg = self.run.config
        nb = "&nbsp;"
        bal = rep.balanced_accuracy_interval()
        decided = self._decision_html()  # OK/NG first; argmax figures follow
        lines = [
            f"<b>{html_text(run_title(self.run))}</b> <small>({cfg.get('arch', '?')},{nb}"
            f"{cfg.get('img_size', '?')}{nb}px)</small>" + self._approval_badge(),
            *([decided, "<small>By the most likely class:</small>"] if decided else []),
            f"<span style='font-size:large'><b>{pct(s.balanced_accuracy)}</b> balanced "
            f"accuracy</span> <small>({ci_range(bal).replace(' ', nb)})</small>",
        ]
        if s.worst_recall is not None:
            worst = (rep.recall_interval(rep.class_names.index(s.worst_class))
                     if s.worst_class in rep.class_names else None)
            bracket = f" <small>({ci_range(worst).replace(' ', nb)})</small>" if worst else ""
            lines.append(f"worst class <b>{html_text(s.worst_class or '?')} {pct(s.worst_recall)}"
                         f"</b> recall{bracket}")
        both = summary.side_by_side(self.run.metrics, self.subset, rep.balanced_accuracy)
        if both:
            lines.append(f"<span style='color:{WARN_COLOR}'>⚠ {html_text(both)}</span>"
                         if "points apart" in both else f"<small>{html_text(both)}</small>")
        lines.append(f"accuracy {pct_ci(rep.accuracy_interval()).replace(' ', nb)} · "
                     f"macro-F1 {pct(rep.macro_f1)}"
                     f" <small>· {rep.n:,} {name} images{loss} · brackets: 95 % "
                     "intervals</small>")
        few = summary.few_image_classes(rep.per_class)
        if few:
            lines.append(f"<span style='color:{WARN_COLOR}'>⚠ {html_text(too_few(few, rep, name))}"
                         "</span>")
        recount = self._recount()
        if recount:
            lines.append(f"<span style='color:{WARN_COLOR}'>⚠ {recount}</span>")
        leak = self._leak_warning()
        if leak:
            lines.append(f"<span style='color:{WARN_COLOR}'>⚠ {html_text(leak)}</span>")
        return "<br>".join(lines)

    def _recount(self) -> str:
        """After relabeling: the figures with the labels as they are now (the matrix, the
        table and the views keep the labels of the run's time, and say so)."""
        from densestudio.ml.eval_report import build_report

        if self.run is None or self.report is None:
            return ""
        index_of = {cid: k for k, cid in enumerate(self.class_ids) if cid is not None}
        changed, now_preds = 0, []
        for p in self.preds.values():
            if p.true_index is None:
                continue
            then = self.class_ids[p.true_index] if p.true_index < len(self.class_ids) else None
            now = self.current_labels.get(p.image_id, then)
            if now == then:
                now_preds.append(p)
                continue
            changed += 1
            if now is not None and now in index_of:  # unlabeled or a new class: left out
                now_preds.append(replace(p, true_index=index_of[now]))
        if not changed:
            return ""
        rep = build_report(self.run.id, self.subset, self.run.class_names, now_preds)
        wrong = sum(p.pred_index != p.true_index for p in now_preds)
        return (f"{changed:,} image{'s' if changed != 1 else ''} relabeled since the run. "
                f"With the labels as they are now: <b>{pct(rep.balanced_accuracy)}</b> "
                f"balanced accuracy, accuracy {pct(rep.accuracy)}, {wrong:,} misclassified "
                f"of {rep.n:,}. The matrix, the table and the views below count the labels "
                "as they were at the run's time.")

    def _leak_warning(self) -> str:
        """Near-identical images across splits, model-made test labels (read with the
        predictions)."""
        return self.leak

    def _decision_html(self) -> str:
        """What the run's saved OK/NG point decides on the shown subset, over all of it:
        defects passed as good, good parts rejected, sent to a person (empty without a
        point), and Train's note when validation could not show its target."""
        from densestudio.ml import operating_point as op

        assert self.run is not None  # a report is shown
        point, record = self.point, self.picked
        note = (f"<span style='color:{WARN_COLOR}'>⚠ {html_text(str(record['message']))}"
                "</span>" if record and not record.get("shown") else "")
        if point is None or point.good_class not in self.run.class_names:
            return note
        good = list(self.run.class_names).index(point.good_class)
        labeled = [p for p in self.preds.values()
                   if p.true_index is not None and good < len(p.probs)]
        if not labeled:
            return note
        c = op.decision_counts(np.array([float(p.probs[good]) for p in labeled]),
                               np.array([p.true_index == good for p in labeled]), point)
        color = "#c62828" if c.passed else "#1b7f3b"
        rejected = clopper_pearson(c.rejected, c.good)
        return (
            f"<span style='font-size:large;color:{color}'>Defects passed as good: "
            f"<b>{c.passed} of {c.defects}</b></span> ({pct(c.passed / max(c.defects, 1))}, "
            f"at most {c.passed_upper * 100:.1f} % at 95 %) <small>· OK when "
            f"P({html_text(point.good_class)}) ≥ {point.threshold:.3g}</small><br>"
            f"good parts rejected <b>{c.rejected} of {c.good}</b> ({pct_ci(rejected)}) · "
            f"sent to a person <b>{c.unsure} of {c.n}</b> ({pct(c.unsure / max(c.n, 1))})"
            + (f"<br>{note}" if note else ""))
