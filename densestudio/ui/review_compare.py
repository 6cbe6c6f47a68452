"""The Review tab's comparison of two runs: the compare list, the table side by side and the
images only one of them gets right. A mixin of ``ReviewPanel``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from densestudio.core import runs as core_runs
from densestudio.ui.review_base import ReviewBase
from densestudio.ui.review_parts import SUBSETS, fill_comparison

if TYPE_CHECKING:
    from densestudio.ml.eval_report import EvalReport


class ReviewCompare(ReviewBase):
    """Comparing the shown run with another in ``ReviewPanel``."""

    def _fill_compare(self) -> None:
        keep = self.other.id if self.other else None
        self.compare_combo.clear()
        self.compare_combo.addItem("— (no comparison)", None)
        for i in range(self.run_combo.count()):
            run_id = self.run_combo.itemData(i)
            if self.run is not None and run_id != self.run.id:
                self.compare_combo.addItem(self.run_combo.itemText(i), run_id)
        index = self.compare_combo.findData(keep) if keep is not None else 0
        self.compare_combo.setCurrentIndex(max(0, index))
        if self.compare_combo.currentData() is None:
            self.other = None

    def set_compare(self, run_id: int | None) -> None:
        if run_id is not None and self.compare_combo.currentData() != run_id:
            index = self.compare_combo.findData(run_id)
            if index >= 0:
                self._loading = True
                self.compare_combo.setCurrentIndex(index)
                self._loading = False
        if run_id is None or self.project is None:
            self.other, self.other_preds, self.other_report = None, {}, None
            self.compare_box.hide()
            self.compare_hint.show()
            self._update_buttons()
            return
        self.other = self._runs.get(run_id)  # listed in the compare combo
        if self.other is None:
            return
        if self.run is not None:
            self._read_predictions(with_run=False)

    def _show_other(self, other: EvalReport | None) -> None:
        """The comparison table of the shown run's report and ``other``'s."""
        assert self.other is not None and self.run is not None
        fill_comparison(self.compare_table, self.run, self.report, self.other, other,
                        self.compare_counts())
        self.compare_box.setTitle(f"Comparison on the {dict(SUBSETS)[self.subset].lower()} set")
        self.compare_box.show()
        self.compare_hint.hide()

    @staticmethod
    def _right(p: core_runs.PredictionInfo | None) -> bool | None:
        if p is None or p.true_index is None:
            return None
        return p.pred_index == p.true_index

    def compare_ids(self, kind: str) -> list[int]:
        """Images (in both runs' subset) that only this run ("a_only") or only the other
        run ("b_only") gets right; most confident first."""
        if self.other is None:
            return []
        out = []
        for image_id, p in self.preds.items():
            q = self.other_preds.get(image_id)
            ra, rb = self._right(p), self._right(q)
            if ra is None or rb is None:
                continue
            assert q is not None  # else rb is None
            if (kind == "a_only" and ra and not rb) or (kind == "b_only" and rb and not ra):
                out.append((-(p.confidence if kind == "b_only" else q.confidence), image_id))
        return [i for _, i in sorted(out)]

    def compare_counts(self) -> tuple[int, int]:
        return len(self.compare_ids("a_only")), len(self.compare_ids("b_only"))
