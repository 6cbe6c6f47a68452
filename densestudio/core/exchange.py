"""Labels in and out of the project as CSV, for spreadsheets and other tools."""

from __future__ import annotations

import csv
from pathlib import Path

from sqlalchemy import select

from densestudio.core.files import open_output
from densestudio.core.models import Image, LabelClass

CSV_COLUMNS = (
    "path", "filename", "content_hash", "label", "split", "label_source", "labeled_by",
    "labeled_at", "width", "height", "mode", "missing",
)  # fmt: skip

# A spreadsheet runs a cell that starts like a formula (=HYPERLINK(...), +, -, @) - OWASP's
# CSV-injection advice: make such text cells start with a single quote instead.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_text(value: str) -> str:
    """A text cell that a spreadsheet shows as text, never evaluates."""
    return "'" + value if value.startswith(_FORMULA_STARTS) else value


def csv_output(out: Path):  # TYPEHINT - ContextManager[TextIO]
    """The CSV file a user named, written safely (see ``files.open_output``); file names
    that are not UTF-8 are written as their original bytes."""
    return open_output(Path(out), "w", newline="", encoding="utf-8", errors="surrogateescape")


def export_labels_csv(project, out: Path) -> int:  # TYPEHINT - store.Project
    """Write one row per image; atomic (temp file + rename) so a crash leaves no half file."""
    with project.session() as s:
        names = dict(iter(s.execute(select(LabelClass.id, LabelClass.name))))
        rows = s.execute(
            select(
                Image.path, Image.content_hash, Image.label_id, Image.split, Image.label_source,
                Image.labeled_by, Image.labeled_at, Image.width, Image.height, Image.mode,
                Image.missing,
            ).order_by(Image.path)
        ).all()
    with csv_output(out) as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for path, digest, label_id, split, source, who, when, w, h, mode, missing in rows:
            writer.writerow([
                csv_text(path), csv_text(Path(path).name), digest,
                csv_text(names.get(label_id, "")), split or "", source or "",
                csv_text(who or ""), when.isoformat(timespec="seconds") if when else "",
                w, h, mode, int(missing),
            ])  # fmt: skip
    return len(rows)
