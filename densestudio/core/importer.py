"""Import image folders and files into a project, and re-link moved ones.

Nothing bad stops an import: every file that cannot be used is skipped with a reason in the
report. Files are read once (hash, probe and thumbnail from the same bytes) by a small thread
pool (Pillow and hashlib release the GIL), and rows are committed in batches, each batch one
transaction, so a cancel or a crash leaves exactly the committed batches behind.
"""

from __future__ import annotations

import json
import os
import stat
import time
import unicodedata
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from densestudio.core import history
from densestudio.core.constants import SOURCE_FOLDER
from densestudio.core.errors import CancelledError, ImportFailed, ProjectError
from densestudio.core.files import file_kind, natural_key
from densestudio.core.imaging import (
    DAMAGED,
    IMAGE_EXTENSIONS,
    IN_MEMORY_BYTES,
    MAX_FILE_BYTES,
    ImageDecodeError,
    bytes_hash,
    decode_for_import,
    file_hash,
    is_image_path,
    open_regular,
    other_types_note,
    stream_hash,
)
from densestudio.core.models import Image, ImportLog, path_text, utcnow
from densestudio.core.progress import CancelToken, EventCallback, Progress, ignore_event
from densestudio.core.splits import assign_missing_splits
from densestudio.core.store import (
    Project,
    add_class_in_session,
    bulk_insert_images,
    class_name_from_folder,
    current_user,
    find_class,
)
from densestudio.core.thumbnails import ThumbnailCache

BATCH_SIZE = 500
BATCH_SECONDS = 1.0
CHUNK = 16  # files per pool task (and per progress event): fewer futures and wake-ups


@dataclass(frozen=True)
class ImportOptions:
    labels_from_subfolders: bool = False
    workers: int = max(2, min(4, os.cpu_count() or 2))


@dataclass(frozen=True)
class ImportProgress(Progress):
    phase: str  # "scanning" | "importing"
    done: int
    total: int
    added: int
    duplicates: int
    skipped: int
    rate: float  # files per second
    eta_s: float | None
    current: str


@dataclass(frozen=True)
class SkippedFile:
    path: str
    reason: str


@dataclass(frozen=True)
class ImportReport:
    added: int = 0
    already_in_project: int = 0
    duplicates: int = 0  # same content as another image (kept once)
    skipped: tuple[SkippedFile, ...] = ()
    cancelled: bool = False
    seconds: float = 0.0
    new_classes: tuple[str, ...] = ()
    # How folder names became classes when not verbatim, e.g. "folder 'Scratches' labeled
    # as existing class 'scratches'".
    notes: tuple[str, ...] = ()

    def summary(self) -> str:
        parts = [f"{self.added} image(s) added"]
        if self.already_in_project:
            parts.append(f"{self.already_in_project} already in project")
        if self.duplicates:
            parts.append(f"{self.duplicates} duplicate(s) of other images")
        if self.skipped:
            parts.append(f"{len(self.skipped)} skipped")
        if self.new_classes:
            parts.append(f"new classes: {', '.join(self.new_classes)}")
        if not (self.added or self.already_in_project or self.duplicates or self.skipped):
            parts = ["no image files found (looked for " + ", ".join(
                sorted(e.lstrip(".") for e in IMAGE_EXTENSIONS)) + ")"]
        text = ", ".join(parts) + f" in {self.seconds:.1f} s."
        return ("Import cancelled: " if self.cancelled else "Import finished: ") + text


@dataclass
class _Candidate:
    path: Path
    label: str | None


@dataclass
class _Decoded:
    candidate: _Candidate
    byte_size: int
    content_hash: str
    width: int
    height: int
    mode: str
    bit_depth: int
    thumbnail: bytes
    phash: int
    mtime_ns: int | None = None


@dataclass
class _Tally:
    added: int = 0
    already: int = 0
    duplicates: int = 0
    skipped: list[SkippedFile] = field(default_factory=list)
    new_classes: list[str] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)  # folder label -> note
    others: dict[str, int] = field(default_factory=dict)  # extension -> files not images


# ------------------------------------------------------------------ scanning
def scan(
    paths: Sequence[Path], labels_from_subfolders: bool, skipped: list[SkippedFile],
    cancel: CancelToken, others: dict[str, int] | None = None,
) -> Iterator[_Candidate]:
    """Image files under ``paths`` (recursive), each with its sub-folder label if asked.

    Symlinked folders are followed once (a loop is reported, not followed forever);
    unreadable folders are reported and skipped.
    """
    for root in paths:
        root = Path(os.path.abspath(Path(root).expanduser()))  # absolute, no "..": stable keys
        try:
            mode = os.stat(root).st_mode
        except FileNotFoundError:
            raise ImportFailed(f"Not found: {root}") from None
        except OSError as exc:
            raise ImportFailed(f"Cannot read {root}: {exc.strerror or exc}") from None
        if stat.S_ISREG(mode):
            if is_image_path(root):
                yield _Candidate(root, None)
            else:
                skipped.append(SkippedFile(str(root), "not an image file type"))
            continue
        if not stat.S_ISDIR(mode):
            skipped.append(SkippedFile(str(root), f"not a regular file ({file_kind(mode)})"))
            continue
        visited: set[str] = set()
        stack = [root]
        while stack:
            cancel.raise_if_cancelled()
            folder = stack.pop()
            try:
                real = os.path.realpath(folder)
                if real in visited:
                    skipped.append(SkippedFile(str(folder), "folder link loop (already scanned)"))
                    continue
                visited.add(real)
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError as exc:
                skipped.append(SkippedFile(str(folder),
                                           f"cannot read folder: {exc.strerror or exc}"))
                continue
            subfolders = []
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=True):
                        subfolders.append(Path(entry.path))
                    elif entry.is_file(follow_symlinks=True) and is_image_path(Path(entry.name)):
                        yield _Candidate(Path(entry.path), _label_for(root, Path(entry.path),
                                                                      labels_from_subfolders))
                    elif entry.is_symlink() and not os.path.exists(entry.path):
                        skipped.append(SkippedFile(entry.path, "broken link"))
                    elif is_image_path(Path(entry.name)):  # a FIFO, device, ... named x.jpg
                        kind = file_kind(entry.stat(follow_symlinks=True).st_mode)
                        skipped.append(SkippedFile(entry.path, f"not a regular file ({kind})"))
                    elif others is not None and not entry.name.startswith("."):
                        ext = Path(entry.name).suffix.lower()  # counted, for the report
                        others[ext] = others.get(ext, 0) + 1
                except OSError as exc:
                    skipped.append(SkippedFile(entry.path, f"cannot read: {exc.strerror or exc}"))
            stack.extend(reversed(subfolders))


def _label_for(root: Path, path: Path, enabled: bool) -> str | None:
    """Name of the first sub-folder below the import root (root/scratch/a/b.png -> scratch)."""
    if not enabled:
        return None
    rel = path.relative_to(root).parts
    return rel[0].strip() or None if len(rel) > 1 else None


# ------------------------------------------------------------------ decoding
def _decode(candidate: _Candidate) -> _Decoded | SkippedFile:
    path = candidate.path
    try:
        with open_regular(path) as f:
            st = os.fstat(f.fileno())
            size = st.st_size
            if size == 0:
                return SkippedFile(str(path), "empty file (0 bytes)")
            if size > MAX_FILE_BYTES:
                return SkippedFile(str(path), "file larger than 2 GiB")
            if size <= IN_MEMORY_BYTES:  # the usual case: one read for hash and decode
                data = f.read()
                source: bytes | BinaryIO = data
                digest = bytes_hash(data)
            else:  # stream the hash; Pillow then reads only what the image needs
                digest = stream_hash(f)
                f.seek(0)
                source = f
            try:
                probe, thumb, phash = decode_for_import(source)
            except ImageDecodeError as exc:
                return SkippedFile(str(path), str(exc))
            except Exception as exc:  # a Pillow plugin bug must not end the import
                return SkippedFile(str(path), f"{DAMAGED} ({type(exc).__name__})")
    except ImageDecodeError as exc:  # not a regular file
        return SkippedFile(str(path), str(exc))
    except FileNotFoundError:
        return SkippedFile(str(path), "file vanished during import")
    except PermissionError:
        return SkippedFile(str(path), "permission denied")
    except OSError as exc:
        return SkippedFile(str(path), f"cannot read: {exc.strerror or exc}")
    return _Decoded(candidate, size, digest, probe.width, probe.height,
                    probe.mode, probe.bit_depth, thumb, phash, st.st_mtime_ns)


def _decode_chunk(chunk: list[_Candidate]) -> list[_Decoded | SkippedFile]:
    return [_decode(candidate) for candidate in chunk]


# ------------------------------------------------------------------ import
def run_import(
    project: Project,
    paths: Sequence[Path],
    options: ImportOptions = ImportOptions(),
    on_event: EventCallback = ignore_event,
    cancel: CancelToken | None = None,
) -> ImportReport:
    """Import ``paths`` into ``project``; never raises for a bad file (see the report).

    Raises ImportFailed when the import cannot go on (no such folder, a read-only project,
    a full disk): the batches committed before stay in the project, and the message says so.
    """
    cancel = cancel or CancelToken()
    if not paths:
        raise ImportFailed("Nothing to import: no folders or files given.")
    if project.read_only:
        raise ImportFailed(f"The project is open read-only ({project.read_only}); nothing "
                           "can be imported into it.")
    started = time.monotonic()
    tally = _Tally()
    thumbs = ThumbnailCache(project.cache_dir)
    try:
        return _run_import(project, paths, options, on_event, cancel, started, tally, thumbs)
    finally:
        thumbs.close()


def _run_import(
    project: Project, paths: Sequence[Path], options: ImportOptions, on_event: EventCallback,
    cancel: CancelToken, started: float, tally: _Tally, thumbs: ThumbnailCache,
) -> ImportReport:
    cancelled = False

    with project.session() as s:
        known_paths = dict(iter(s.execute(select(Image.path, Image.byte_size))))
        known_hashes = dict(iter(s.execute(select(Image.content_hash, Image.path))))

    # Scan first (fast: directory entries only) so progress has a total and an ETA.
    candidates: list[_Candidate] = []
    try:
        for candidate in scan(paths, options.labels_from_subfolders, tally.skipped, cancel,
                              tally.others):
            key = str(candidate.path)
            if key in known_paths:
                tally.already += 1
                continue
            candidates.append(candidate)
            if len(candidates) % 1000 == 0:
                on_event(ImportProgress("scanning", 0, len(candidates), 0, 0, len(tally.skipped),
                                        0.0, None, key))
    except CancelledError:
        cancelled = True

    total = len(candidates)
    pending: list[_Decoded] = []
    last_commit = time.monotonic()
    done = 0

    def commit() -> None:
        nonlocal pending, last_commit
        if pending:
            try:
                _commit_batch(project, thumbs, pending, known_hashes, tally)
            except ProjectError as exc:
                raise ImportFailed(
                    f"{exc} The import stopped; the {tally.added} image(s) added before that "
                    "are saved. Import again to add the rest."
                ) from exc
        pending = []
        last_commit = time.monotonic()

    def progress(current: str) -> None:
        elapsed = max(time.monotonic() - started, 1e-6)
        rate = done / elapsed
        eta = (total - done) / rate if rate > 0 else None
        on_event(ImportProgress("importing", done, total, tally.added + len(pending),
                                tally.duplicates, len(tally.skipped), rate, eta, current))

    if not cancelled:
        with ThreadPoolExecutor(max_workers=options.workers) as pool:
            chunks = (candidates[i : i + CHUNK] for i in range(0, total, CHUNK))
            running: deque[Future[list[_Decoded | SkippedFile]]] = deque()
            while not cancel.cancelled:
                while len(running) < 2 * options.workers:
                    chunk = next(chunks, None)
                    if chunk is None:
                        break
                    running.append(pool.submit(_decode_chunk, chunk))
                if not running:
                    break
                current = ""
                for result in running.popleft().result():  # in order; the pool stays busy
                    done += 1
                    if isinstance(result, SkippedFile):
                        tally.skipped.append(result)
                        current = result.path
                    else:
                        pending.append(result)
                        current = str(result.candidate.path)
                progress(current)
                if len(pending) >= BATCH_SIZE or time.monotonic() - last_commit > BATCH_SECONDS:
                    commit()
            for future in running:  # cancelled: what has not started never starts
                future.cancel()
            cancelled = cancel.cancelled
        commit()
    if tally.added:
        _keep_groups_together(project, tally)
    report = ImportReport(
        added=tally.added,
        already_in_project=tally.already,
        duplicates=tally.duplicates,
        skipped=tuple(tally.skipped),
        cancelled=cancelled,
        seconds=time.monotonic() - started,
        new_classes=tuple(tally.new_classes),
        notes=(*tally.notes.values(), *filter(None, [other_types_note(tally.others)])),
    )
    log_import(project, paths, options.labels_from_subfolders, report)
    on_event(report)
    return report


def _keep_groups_together(project: Project, tally: _Tally) -> None:
    """Near-identical images and names sharing a stem go to one split (a batch cannot see
    the next one's members); what a locked test set keeps apart is reported as a note."""
    from densestudio.core.near_duplicates import keep_groups_together

    try:
        kept = keep_groups_together(project)
    except ProjectError as exc:  # the import itself is saved; the check can be run again
        tally.notes["groups"] = f"near-duplicates not checked: {exc}"
        return
    if kept.moved:
        tally.notes["groups"] = (f"{kept.moved:,} near-identical or same-name image(s) moved "
                                 "so that each group shares a split")
    if kept.leaks.spanning:
        tally.notes["leaks"] = kept.leaks.warning()


def _commit_batch(
    project: Project,
    thumbs: ThumbnailCache,
    batch: list[_Decoded],
    known_hashes: dict[str, str],
    tally: _Tally,
) -> None:
    """Insert one batch of decoded files in one transaction (thumbnails first: a crash
    between the two leaves an unused cache entry, never a row without its data).

    The transaction holds the write lock from its start, so files another import (another
    process) added since this one started are seen here and counted, not inserted twice."""
    fresh = []
    for item in batch:
        if item.content_hash in known_hashes:
            tally.duplicates += 1
            continue
        known_hashes[item.content_hash] = str(item.candidate.path)
        fresh.append(item)
    if not fresh:
        return
    thumbs.put_many((item.content_hash, item.thumbnail) for item in fresh)
    with project.transaction() as s:
        taken_paths = set(s.scalars(select(Image.path).where(
            Image.path.in_([str(item.candidate.path) for item in fresh]))))
        taken_hashes = set(s.scalars(select(Image.content_hash).where(
            Image.content_hash.in_([item.content_hash for item in fresh]))))
        class_ids = _class_ids(s, {i.candidate.label for i in fresh if i.candidate.label}, tally)
        now, who = utcnow(), current_user()
        rows = []
        for item in fresh:
            path = item.candidate.path
            if str(path) in taken_paths:
                tally.already += 1
                continue
            if item.content_hash in taken_hashes:
                tally.duplicates += 1
                continue
            label_id = class_ids.get(item.candidate.label) if item.candidate.label else None
            rows.append(
                dict(
                    path=str(path),
                    filename=path_text(path.name).lower(),
                    folder=str(path.parent),
                    content_hash=item.content_hash,
                    byte_size=item.byte_size,
                    file_mtime_ns=item.mtime_ns,
                    width=item.width,
                    height=item.height,
                    mode=item.mode,
                    bit_depth=item.bit_depth,
                    added_at=now,
                    missing=False,
                    phash=item.phash,
                    label_id=label_id,
                    label_source=SOURCE_FOLDER if label_id else None,
                    labeled_by=who if label_id else None,
                    labeled_at=now if label_id else None,
                )
            )
        bulk_insert_images(s, rows)
        history.record_imported(s, rows, who, now)
        assign_missing_splits(s)
    tally.added += len(rows)


def _class_ids(s: Session, folder_labels: set[str], tally: _Tally) -> dict[str, int | None]:
    """Class id for each sub-folder name: an existing class that differs only in case or
    Unicode form is reused (and said so); a new one is created (fixed where needed)."""
    ids: dict[str, int | None] = {}
    for label in sorted(folder_labels):
        name, change = class_name_from_folder(label)
        if name is None:
            ids[label] = None
            if change:
                tally.notes.setdefault(label, f"folder '{_short(label)}' is not a class name "
                                              f"({change}); its images are left unlabeled")
            continue
        row = find_class(s, name)
        if row is None:
            ids[label] = add_class_in_session(s, name, None).id
            tally.new_classes.append(name)
            if change:
                tally.notes.setdefault(label, f"folder '{_short(label)}' labeled as class "
                                              f"'{_short(name)}' ({change})")
        else:
            ids[label] = row.id
            if unicodedata.normalize("NFC", row.name) != name or change:  # NFD looks the same
                why = f" ({change})" if change else ""
                tally.notes.setdefault(label, f"folder '{_short(label)}' labeled as existing "
                                              f"class '{_short(row.name)}'{why}")
    return ids


def _short(text: str, limit: int = 60) -> str:
    """For messages: printable, and at most ``limit`` characters."""
    text = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in path_text(text))
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ------------------------------------------------------------------ relink
@dataclass(frozen=True)
class RelinkResult:
    relinked: int
    still_missing: int


def relink(
    project: Project,
    folders: Sequence[Path],
    on_event: EventCallback = ignore_event,
    cancel: CancelToken | None = None,
) -> RelinkResult:
    """Find missing images by content hash under ``folders`` and point their rows there."""
    cancel = cancel or CancelToken()
    project.refresh_missing()
    with project.session() as s:
        rows = s.execute(select(Image.content_hash, Image.id).where(Image.missing.is_(True)))
        missing = {digest: image_id for digest, image_id in rows}
        known_paths = set(s.scalars(select(Image.path)))
    if not missing:
        return RelinkResult(0, 0)
    skipped: list[SkippedFile] = []
    found: dict[int, Path] = {}
    for candidate in scan(folders, False, skipped, cancel):
        if str(candidate.path) in known_paths:
            continue
        try:
            digest = file_hash(candidate.path)
        except (OSError, ImageDecodeError):  # unreadable, or not a regular file
            continue
        image_id = missing.get(digest)
        if image_id is not None and image_id not in found:
            found[image_id] = candidate.path
            on_event(ImportProgress("importing", len(found), len(missing), 0, 0, 0, 0.0, None,
                                    str(candidate.path)))
            if len(found) == len(missing):
                break
    with project.transaction() as s:
        for image_id, path in found.items():
            s.execute(
                update(Image)
                .where(Image.id == image_id)
                .values(path=str(path), filename=path_text(path.name).lower(),
                        name_key=natural_key(path_text(path.name)),
                        folder=str(path.parent), missing=False)
            )
    return RelinkResult(len(found), len(missing) - len(found))


def log_import(project: Project, sources: Sequence[Path], labels_from_subfolders: bool,
               report: ImportReport, who: str | None = None) -> None:
    """Remember where images came from (the report's "import sources")."""
    with project.transaction() as s:
        s.add(ImportLog(
            at=utcnow(), who=(who or current_user())[:64],
            sources_json=json.dumps([str(Path(p).expanduser().absolute()) for p in sources]),
            labels_from_subfolders=labels_from_subfolders, added=report.added,
            duplicates=report.duplicates, already_in_project=report.already_in_project,
            skipped=len(report.skipped), cancelled=report.cancelled,
        ))  # fmt: skip
