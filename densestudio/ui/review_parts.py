"""Stateless pieces of the Review tab (``ui.review_panel``): what a run entry says, the
warnings on predictions, the comparison table of two runs and small table helpers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHeaderView,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from densestudio.core import runs as core_runs
from densestudio.core.formatting import percent as pct
from densestudio.ml import summary
from densestudio.ui.gallery_view import GalleryView
from densestudio.ui.runs_panel import run_title

if TYPE_CHECKING:
    from densestudio.ml.eval_report import EvalReport


SUBSETS = (("val", "Validation"), ("test", "Test"))
VIEWS = (
    ("misclassified", "Misclassified"),
    ("top_losses", "Top losses"),
    ("unlabeled", "Unlabeled predictions"),
    ("a_only", "Only this run right"),
    ("b_only", "Only the other right"),
)


@dataclass(frozen=True)
class Shown:
    kind: str  # "cell" | "misclassified" | "top_losses" | "unlabeled" | "a_only" | "b_only"
    title: str
    cell: tuple[int, int] | None = None


class ReviewGallery(GalleryView):
    empty_text = ""


def make_table(parent: QWidget, headers: list[str]) -> QTableWidget:
    table = QTableWidget(0, len(headers), parent)
    table.setHorizontalHeaderLabels(headers)
    table.verticalHeader().hide()
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
    table.setAlternatingRowColors(True)
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
    table.setWordWrap(False)
    return table


WARN_COLOR = "#b26a00"
LOW_CONFIDENCE = 0.7  # every prediction below this: the model is unsure about these images


def make_run_combo(parent: QWidget, chars: int) -> QComboBox:
    """A run picker wide enough for "#12 name · balanced 66.7 % · worst …"; its list shows
    entries in full."""
    combo = QComboBox(parent)
    combo.setMinimumContentsLength(chars)
    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    combo.view().setTextElideMode(Qt.TextElideMode.ElideNone)
    return combo


def run_entry(info: core_runs.RunInfo, mark: str = "") -> str:
    """A run in a picker: its title (and ``mark``, e.g. " · ✓ approved"), then balanced
    accuracy and the worst class."""
    text = summary.short_text(summary.summarize(info.metrics))
    return f"{run_title(info)}{mark} · {text or info.shown_status}"


def prediction_warnings(preds: list[core_runs.PredictionInfo], class_names: tuple[str, ...],
                        low: float = LOW_CONFIDENCE) -> list[str]:
    """What to distrust in predictions for unlabeled images: classes the model never picks
    (it may not know them), and all predictions being unsure."""
    if not preds:
        return []
    out = []
    predicted = {p.pred_index for p in preds}
    never = [n for i, n in enumerate(class_names) if i not in predicted]
    if never:
        names = ", ".join(f"'{n}'" for n in never)
        out.append(f"No image was predicted as {names}: if some of these images are "
                   f"{'that class' if len(never) == 1 else 'those classes'}, the model does "
                   "not recognise it yet.")
    best = max(p.confidence for p in preds)
    if best < low:
        out.append(f"Every prediction is below {low * 100:.0f} % confidence (the highest is "
                   f"{best * 100:.0f} %): the model is unsure about all of these images; "
                   "check them before accepting any.")
    return out


def too_few(few: list[tuple[str, int]], rep: EvalReport, subset: str) -> str:
    """The warning for classes with too few images in the set to judge their recall."""
    def images(k: int) -> str:
        return f"{k} {subset} image{'s' if k != 1 else ''}"

    if len(few) == len(rep.per_class) and len(few) > 1:
        lo, hi = min(k for _, k in few), max(k for _, k in few)
        each = f"{lo} each" if lo == hi else f"{lo}–{hi} each"
        return (f"Too few to judge: every class has fewer than {summary.FEW_IMAGES} "
                f"{subset} images ({each}); one image moves a class's recall by "
                f"{100 / max(1, hi):.0f} % or more. Label more images.")
    listed = ", ".join(f"{n} ({images(k)})" for n, k in few[:4])
    more = f" and {len(few) - 4} more" if len(few) > 4 else ""
    return f"Too few to judge: {listed}{more}. Label more images of these classes."


def table_item(text: str, right: bool = True) -> QTableWidgetItem:
    item = QTableWidgetItem(text)
    if right:
        item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    return item


def fill_comparison(table: QTableWidget, run: core_runs.RunInfo, a: EvalReport | None,
                    other_run: core_runs.RunInfo, b: EvalReport | None,
                    counts: tuple[int, int]) -> None:
    """The Compare runs table: ``run``'s report ``a`` against ``other_run``'s ``b``, led by
    balanced accuracy and the worst class; ``counts``: images only one of them gets right."""
    rows: list[tuple[str, float | None, float | None, bool]] = []

    def val(rep: EvalReport | None, attr: str) -> float | None:
        return None if rep is None else getattr(rep, attr)

    worst_a = summary.worst_class(a.per_class) if a else None
    worst_b = summary.worst_class(b.per_class) if b else None
    rows.append(("Balanced accuracy", val(a, "balanced_accuracy"),
                 val(b, "balanced_accuracy"), True))
    rows.append(("Worst-class recall", worst_a[1] if worst_a else None,
                 worst_b[1] if worst_b else None, True))
    rows.append(("Worst class", None, None, True))  # names, filled in below
    rows.append(("Accuracy", val(a, "accuracy"), val(b, "accuracy"), True))
    rows.append(("Macro-F1", val(a, "macro_f1"), val(b, "macro_f1"), True))
    rows.append(("Loss", val(a, "loss"), val(b, "loss"), False))
    recall_other = {c.name: c.recall for c in b.per_class} if b else {}
    for c in (a.per_class if a else []):
        rows.append((f"Recall {c.name}", c.recall, recall_other.get(c.name), True))
    table.setHorizontalHeaderLabels(
        ["Metric", f"#{run.id}", f"#{other_run.id}", "Δ"])
    for col, info in ((1, run), (2, other_run)):
        header = table.horizontalHeaderItem(col)
        header.setToolTip(run_title(info))  # type: ignore[union-attr]  # the labels made it
    table.setRowCount(len(rows) + 1)
    for row, (name, x, y, is_pct) in enumerate(rows):
        def fmt(v: float | None, is_pct: bool = is_pct) -> str:
            return "—" if v is None else (pct(v) if is_pct else f"{v:.3f}")

        delta = "—" if x is None or y is None else (
            f"{(x - y) * 100:+.1f}" if is_pct else f"{x - y:+.3f}")
        for col, text in enumerate((name, fmt(x), fmt(y), delta)):
            cell_item = table_item(text, right=col > 0)
            if col == 0:
                cell_item.setToolTip(name)
            table.setItem(row, col, cell_item)
    for col, worst in ((1, worst_a), (2, worst_b)):  # which class is the worst
        cell = table.item(2, col)
        if worst is not None and cell is not None:
            cell.setText(worst[0] if len(worst[0]) <= 16 else worst[0][:15] + "…")
            cell.setToolTip(f"'{worst[0]}' is the class this run recognises least often")
    table.item(2, 3).setText("")  # type: ignore[union-attr]  # set above
    table.setItem(len(rows), 0, table_item("Right here / right there only", False))
    table.setItem(len(rows), 1, table_item(f"{counts[0]:,}"))
    table.setItem(len(rows), 2, table_item(f"{counts[1]:,}"))
    table.setItem(len(rows), 3, table_item(""))
