"""Labels in and out of the project as CSV, for spreadsheets and other tools."""

from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path

from sqlalchemy import select

from densestudio.core.models import Image, LabelClass

CSV_COLUMNS = (
    "path", "filename", "content_hash", "label", "split", "label_source", "labeled_by",
    "labeled_at", "width", "height", "mode", "missing",
)  # fmt: skip


def export_labels_csv(project, out: Path) -> int:  # noqa: ANN001 - store.Project
    """Write one row per image; atomic (temp file + rename) so a crash leaves no half file."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with project.session() as s:
        names = dict(iter(s.execute(select(LabelClass.id, LabelClass.name))))
        rows = s.execute(
            select(
                Image.path, Image.content_hash, Image.label_id, Image.split, Image.label_source,
                Image.labeled_by, Image.labeled_at, Image.width, Image.height, Image.mode,
                Image.missing,
            ).order_by(Image.path)
        ).all()
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=out.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(CSV_COLUMNS)
            for path, digest, label_id, split, source, who, when, w, h, mode, missing in rows:
                writer.writerow([
                    path, Path(path).name, digest, names.get(label_id, ""), split or "",
                    source or "", who or "", when.isoformat(timespec="seconds") if when else "",
                    w, h, mode, int(missing),
                ])  # fmt: skip
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return len(rows)
