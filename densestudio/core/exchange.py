"""Labels in and out of the project as CSV, for spreadsheets and other tools."""

from __future__ import annotations

import csv
import io
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from densestudio.core import history
from densestudio.core.constants import SOURCE_IMPORT
from densestudio.core.csv_cells import FORMULA_STARTS, csv_output, csv_text
from densestudio.core.errors import ProjectError
from densestudio.core.machine import root_map
from densestudio.core.models import Image, LabelClass
from densestudio.core.store import (
    Project,
    add_class_in_session,
    current_user,
    find_class,
    normalize_author,
    normalize_class_name,
    set_labels_in_session,
)

CSV_COLUMNS = (
    "path", "filename", "content_hash", "label", "split", "label_source", "labeled_by",
    "labeled_at", "width", "height", "mode", "missing",
)  # fmt: skip

def export_labels_csv(project: Project, out: Path) -> int:
    """Write one row per image; atomic (temp file + rename) so a crash leaves no half file.
    An ``out`` that is the project, its side files or one of its images is refused."""
    project.refuse_overwriting(out)
    with project.session() as s:
        # keyed by int | None: unlabeled rows look up None and get ""
        names: dict[int | None, str] = dict(iter(s.execute(select(LabelClass.id, LabelClass.name))))
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


# ------------------------------------------------------------------ import
PATH_COLUMNS = ("path",)
HASH_COLUMNS = ("content_hash", "hash")
CLASS_COLUMNS = ("class", "label")
AUTHOR_COLUMNS = ("author", "labeled_by")


@dataclass(frozen=True)
class LabelImportReport:
    """What ``import_labels_csv`` did, row by row where it could not."""

    rows: int  # data rows read
    changed: int  # images whose label changed
    unchanged: int  # images that already had that label
    unknown_images: tuple[tuple[int, str], ...]  # (line, path or hash) found in no image
    unknown_classes: dict[str, int]  # class name -> rows skipped (no --create-classes)
    created_classes: tuple[str, ...]
    bad_rows: tuple[tuple[int, str], ...]  # (line, why)
    repeated: int  # images named by more than one row (the last row counts)

    @property
    def skipped(self) -> int:
        return (len(self.unknown_images) + sum(self.unknown_classes.values())
                + len(self.bad_rows))

    def summary(self) -> str:
        parts = [f"{self.changed} label(s) set", f"{self.unchanged} already so"]
        if self.created_classes:
            parts.append(f"{len(self.created_classes)} class(es) created")
        if self.skipped:
            parts.append(f"{self.skipped} row(s) skipped")
        return f"{self.rows} row(s): " + ", ".join(parts) + "."


def _cell(value: str | None) -> str:
    """A cell as written by ``csv_text`` (or a spreadsheet): a quote that guards a
    formula-like start is removed."""
    value = (value or "").strip()
    if value.startswith("'") and value[1:].startswith(FORMULA_STARTS):
        return value[1:]
    return value


def _column(header: list[str], names: tuple[str, ...]) -> int | None:
    lowered = [h.strip().lower() for h in header]
    return next((lowered.index(n) for n in names if n in lowered), None)


def _csv_text(raw: bytes, source: Path) -> str:
    """The text of a CSV file: UTF-8 (with or without a BOM; bytes that are not UTF-8 are
    kept as in file names, see ``_check_text``) or UTF-16 (a BOM, or NULs that show it)."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        encoding = "utf-16"  # the BOM says the byte order
    elif b"\x00" in raw[:4096]:
        encoding = "utf-16-le" if raw[1:2] == b"\x00" else "utf-16-be"
    else:
        return raw.decode("utf-8-sig", errors="surrogateescape")
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError:
        raise ProjectError(f"{source} looks like UTF-16 text ({encoding}) but cannot be "
                           "decoded as such; save it as UTF-8 and import it again.") from None


def _check_text(source: Path, line: int, *cells: str) -> None:
    """Refuse a file whose class or author text is not UTF-8 (a path may hold any bytes,
    as file names do): typically a spreadsheet's Windows-1252 (cp1252) export."""
    for cell in cells:
        if any("\udc80" <= ch <= "\udcff" for ch in cell):
            raw = cell.encode("utf-8", "surrogateescape")
            raise ProjectError(
                f"{source} is not UTF-8 text: line {line} has '{raw.decode('cp1252', 'replace')}' "
                "as Windows-1252 (cp1252) would read it. Save the file as UTF-8 (Excel: "
                "'CSV UTF-8') and import it again; nothing was changed.")


def _refuse_invalid(source: Path, invalid: list[tuple[int, str]]) -> None:
    """All or nothing: one invalid row and the file changes nothing."""
    if invalid:
        shown = "; ".join(f"line {line}: {why.rstrip('.')}" for line, why in invalid[:5])
        more = f" (and {len(invalid) - 5} more)" if len(invalid) > 5 else ""
        raise ProjectError(f"{source}: {len(invalid)} invalid row(s), so nothing was changed: "
                           f"{shown}{more}.")


def import_labels_csv(project: Project, source: Path, create_classes: bool = False,
                      author: str | None = None) -> LabelImportReport:
    """Label images from a CSV file (a line's MES, a script, another project's export).

    The first row names the columns: ``path`` (absolute, or relative to the CSV's folder)
    and/or ``content_hash`` (``hash``) find the image; ``class`` (``label``) is its class;
    ``author`` (``labeled_by``), if present, says who decided, else ``author`` (default:
    this user). An empty class cell is skipped (never an unlabel). Classes that do not
    exist are created with ``create_classes``, else their rows are skipped and reported.
    Everything is applied in one transaction, under the usual rule that a label records
    its author and that others' clients see the change. Raises ProjectError, changing
    nothing, for a file that is not such a CSV, whose text is not UTF-8/UTF-16, or that has
    an invalid row (an author or a new class name that is refused).
    """
    source = Path(source)
    default_author = normalize_author(author) if author else None
    try:
        with open(source, "rb") as f:
            text = _csv_text(f.read(), source)
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except OSError as exc:
        raise ProjectError(f"Cannot read {source}: {exc.strerror or exc}") from exc
    except csv.Error as exc:
        raise ProjectError(f"{source} is not a readable CSV file ({exc}).") from exc
    if not rows:
        raise ProjectError(f"{source} is empty; it needs a header row (path or "
                           "content_hash, class, optional author).")
    header = rows[0]
    col_path, col_hash = _column(header, PATH_COLUMNS), _column(header, HASH_COLUMNS)
    col_class, col_author = _column(header, CLASS_COLUMNS), _column(header, AUTHOR_COLUMNS)
    if col_class is None or (col_path is None and col_hash is None):
        raise ProjectError(f"{source}: the first row must name the columns: 'path' or "
                           "'content_hash', 'class', and optionally 'author' (found: "
                           f"{', '.join(h.strip() for h in header) or 'nothing'}).")
    with project.session() as s:
        by_path: dict[str, int] = {}
        by_hash: dict[str, int] = {}
        for known_id, known_path, known_hash in s.execute(
                select(Image.id, Image.path, Image.content_hash)):
            by_path[known_path] = known_id
            by_hash[known_hash.lower()] = known_id
    base = source.resolve().parent
    wanted: dict[int, tuple[str, str | None, int]] = {}  # image -> (class, author, line)
    unknown_images: list[tuple[int, str]] = []
    bad_rows: list[tuple[int, str]] = []  # skipped (no class)
    invalid: list[tuple[int, str]] = []  # the whole file is refused
    repeated = 0

    def get(row: list[str], col: int | None) -> str:
        return _cell(row[col]) if col is not None and col < len(row) else ""

    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        path, digest = get(row, col_path), get(row, col_hash).lower()
        name, cell_author = get(row, col_class), get(row, col_author)
        if not name:
            bad_rows.append((line, "no class"))
            continue
        image_id: int | None = None
        if path:
            local = root_map().to_local(path)
            absolute = local if os.path.isabs(local) else os.path.abspath(base / local)
            image_id = by_path.get(local, by_path.get(absolute))
        if image_id is None and digest:
            image_id = by_hash.get(digest)
        if image_id is None:
            unknown_images.append((line, path or digest))
            continue
        _check_text(source, line, name, cell_author)
        try:
            who = normalize_author(cell_author) if cell_author else None
        except ProjectError as exc:
            invalid.append((line, str(exc)))
            continue
        repeated += image_id in wanted
        wanted[image_id] = (name, who, line)
    _refuse_invalid(source, invalid)
    unknown_classes: dict[str, int] = {}
    created: list[str] = []
    changed = unchanged = 0
    with project.transaction() as s:
        class_ids: dict[str, int | None] = {}
        failed: set[str] = set()
        for name, _, line in wanted.values():
            if name in class_ids:
                continue
            found = find_class(s, name)
            class_ids[name] = found.id if found else None
            if found is None and create_classes:
                try:
                    info = add_class_in_session(s, normalize_class_name(name), None)
                except ProjectError as exc:
                    invalid.append((line, f"class '{name}': {exc}"))
                    failed.add(name)
                    continue
                created.append(info.name)
                class_ids[name] = info.id
        _refuse_invalid(source, invalid)  # before any label: the transaction rolls back
        groups: dict[tuple[int, str], list[int]] = defaultdict(list)
        for image_id, (name, row_author, _) in wanted.items():
            label_id = class_ids[name]
            if label_id is None:
                if name not in failed:
                    unknown_classes[name] = unknown_classes.get(name, 0) + 1
                continue
            groups[(label_id, row_author or default_author or current_user())].append(image_id)
        for (label_id, by), ids in groups.items():
            change = set_labels_in_session(s, ids, label_id, SOURCE_IMPORT, by,
                                           history.HOW_CSV)
            changed += len(change)
            unchanged += len(ids) - len(change)
    data_rows = sum(1 for r in rows[1:] if any(c.strip() for c in r))
    return LabelImportReport(data_rows, changed, unchanged, tuple(unknown_images),
                             unknown_classes, tuple(created), tuple(bad_rows), repeated)
