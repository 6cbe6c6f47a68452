"""Hostile inputs, round 2 (issue 22), at the core API: no output over what is read, files
changed since import, checkpoints that belong to their run, backups.

Each kind is covered by several examples, not only the one of the probe. CLI-level
reproductions are in tests/cli/test_cli_hostile_2.py; the files come from bad_files.py.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from densestudio.core import runs
from densestudio.core.constants import SOURCE_CHANGED
from densestudio.core.errors import DenseStudioError
from densestudio.core.exchange import export_labels_csv
from densestudio.core.file_changes import check_files, marked_for_review
from densestudio.core.files import Guarded, refuse_overwriting
from densestudio.core.imaging import file_hash
from densestudio.core.importer import run_import
from densestudio.core.preprocess import Preprocessing
from densestudio.core.store import Project
from tests.core.bad_files import make_class_folders, noise
from tests.reliability.test_hostile_inputs import LABELS


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    """A project with 2 classes x 4 labeled images, open (so its -wal/-shm exist)."""
    p = Project.create(tmp_path / "p.dsproj")
    run_import(p, [make_class_folders(tmp_path / "imgs", per_class=4)], LABELS)
    yield p
    p.close()


def _content(path: Path) -> bytes | None:
    return path.read_bytes() if path.is_file() else None


# ------------------------------------------------------------------ 1. no output over inputs
def _victims(p: Project) -> dict[str, Callable[[], Path]]:
    """Ways to name, as an output, something the project reads."""
    root = p.path.parent
    image = Path(p.page(limit=1)[0].path)

    def link(target: Path, name: str) -> Path:
        (root / name).symlink_to(target)
        return root / name

    def hard(target: Path, name: str) -> Path:
        os.link(target, root / name)
        return root / name

    def in_folder(folder: Path, name: str) -> Path:
        (folder / "1").mkdir(parents=True, exist_ok=True)
        (folder / "1" / name).write_bytes(b"checkpoint")
        return folder / "1" / name

    return {
        "project file": lambda: p.path,
        "project via ..": lambda: root / "imgs" / ".." / p.path.name,
        "project via symlink": lambda: link(p.path, "labels.csv"),
        "project via hard link": lambda: hard(p.path, "hard.csv"),
        "-wal": lambda: p.path.with_name(p.path.name + "-wal"),
        "-shm": lambda: p.path.with_name(p.path.name + "-shm"),
        "checkpoint": lambda: in_folder(p.runs_dir, "best.pt"),
        "new file in runs": lambda: p.runs_dir / "1" / "new.csv",
        "cache file": lambda: in_folder(p.cache_dir, "pixels.u8"),
        "image": lambda: image,
        "image via symlink": lambda: link(image, "img.csv"),
        "symlinked runs folder": lambda: link(in_folder(p.runs_dir, "last.pt").parent,
                                              "r") / "last.pt",
    }


VICTIMS = [
    "project file", "project via ..", "project via symlink", "project via hard link", "-wal",
    "-shm", "checkpoint", "new file in runs", "cache file", "image", "image via symlink",
    "symlinked runs folder"]


@pytest.mark.parametrize("victim", VICTIMS)
@pytest.mark.parametrize("write", ["export_labels", "backup"])
def test_no_output_is_written_over_what_the_project_reads(
    project: Project, victim: str, write: str
) -> None:
    """`export-labels P.dsproj P.dsproj` made the project a CSV file; the same kind through
    a link, a hard link, the SQLite side files, a checkpoint, the cache or an image."""
    out = _victims(project)[victim]()
    before = _content(Path(os.path.realpath(out)))
    with pytest.raises(DenseStudioError, match=r"^Refusing to write .*choose another output"):
        export_labels_csv(project, out) if write == "export_labels" else project.backup(out)
    assert _content(Path(os.path.realpath(out))) == before, "nothing written"
    assert project.count_images() == 8, "the project still opens and holds its images"


def test_guarded_folders_are_compared_as_folders_not_as_name_prefixes(tmp_path: Path) -> None:
    runs_dir = tmp_path / "p.dsproj-runs"
    runs_dir.mkdir()
    guard = [Guarded(runs_dir, "the runs folder", folder=True),
             Guarded(tmp_path / "model.onnx", "the model file read")]
    for fine in (tmp_path / "p.dsproj-runs-old.csv", tmp_path / "p.dsproj-runs2" / "x.csv",
                 tmp_path / "model.onnx.csv"):
        refuse_overwriting(fine, guard)
    (tmp_path / "model.onnx").write_bytes(b"m")
    (tmp_path / "alias").symlink_to(tmp_path)
    for bad in (runs_dir, runs_dir / "a" / "b.csv", tmp_path / "alias" / "p.dsproj-runs" / "x",
                tmp_path / "alias" / "model.onnx"):
        with pytest.raises(DenseStudioError, match="Refusing to write"):
            refuse_overwriting(bad, guard)


def test_backup_holds_changes_still_in_the_wal(project: Project, tmp_path: Path) -> None:
    """A plain copy of an open project's .dsproj can miss what is still in its -wal file;
    the backup (SQLite's backup API) has everything, and opens on its own."""
    ok = project.class_by_name("ok")
    assert ok is not None
    ids = project.image_ids()
    project.set_labels(ids, ok.id)  # committed to the WAL, not yet checkpointed
    (tmp_path / "backups").mkdir()
    out = project.backup(tmp_path / "backups")
    assert out.parent == tmp_path / "backups" and out.suffix == ".dsproj"
    assert not list((tmp_path / "backups").glob(".*.tmp")), "no temporary file left"
    with Project.open(out) as copy:
        assert copy.counts().count(ok.id) == len(ids)
    second = project.backup(tmp_path / "b.dsproj")
    with Project.open(second) as copy:
        assert copy.count_images() == 8


# ------------------------------------------------------------------ 2. files changed since import
def _bmp(path: Path, value: int) -> None:
    """Same size in bytes for any value: a BMP of fixed dimensions."""
    Image.fromarray(np.full((16, 16), value, np.uint8), "L").save(path, format="BMP")


def _later(path: Path) -> None:
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))


def test_changed_files_are_rehashed_and_their_labels_marked(tmp_path: Path) -> None:
    """Replaced by other content (another size, the same size), or only touched."""
    folder = tmp_path / "imgs" / "ok"
    folder.mkdir(parents=True)
    for i in range(4):
        _bmp(folder / f"{i}.bmp", 10 * i)
    with Project.create(tmp_path / "p.dsproj") as p:
        run_import(p, [tmp_path / "imgs"], LABELS)
        by_name = {Path(i.path).name: i for i in p.page(limit=10)}
        noise((40, 40), "L", seed=9).save(folder / "0.bmp", format="BMP")  # another size
        _bmp(folder / "1.bmp", 200)  # same size, other content
        _later(folder / "1.bmp")
        _later(folder / "2.bmp")  # touched: same content
        check = check_files(p)
        assert sorted(Path(c.path).name for c in check.changed) == ["0.bmp", "1.bmp"]
        assert check.rehashed == 3 and all(c.labeled for c in check.changed)
        now = {Path(i.path).name: i for i in p.page(limit=10)}
        for name in ("0.bmp", "1.bmp"):
            assert now[name].label_source == SOURCE_CHANGED
            assert now[name].content_hash == file_hash(folder / name) != \
                by_name[name].content_hash
        assert now["2.bmp"].label_source == by_name["2.bmp"].label_source
        _, rows = runs.current_label_rows(p)
        assert {r[0] for r in rows} == {now["2.bmp"].id, now["3.bmp"].id}, \
            "changed files stay out of training"
        from densestudio.core.queries import labeled_present_images

        assert {r[0] for r in labeled_present_images(p)} == {r[0] for r in rows}, \
            "and out of the label audit"
        assert check_files(p).rehashed == 0, "the new times are recorded: nothing to hash"
        assert sorted(Path(x).name for x in marked_for_review(p)) == ["0.bmp", "1.bmp"]
        ok = p.class_by_name("ok")
        assert ok is not None
        p.set_labels([now["0.bmp"].id], ok.id)  # the same class again confirms the label
        assert [Path(x).name for x in marked_for_review(p)] == ["1.bmp"]
        assert len(runs.current_label_rows(p)[1]) == 3


def test_an_upgraded_project_hashes_each_file_once(project: Project) -> None:
    """Rows from before v6 have no recorded time: checked by content once, then by time."""
    con = sqlite3.connect(project.path)
    con.execute("UPDATE image SET file_mtime_ns = NULL")
    con.commit()
    con.close()
    first = check_files(project)
    assert (first.checked, first.rehashed, first.changed) == (8, 8, ())
    assert check_files(project).rehashed == 0


def test_the_decoded_cache_never_keeps_other_pixels_under_a_hash(tmp_path: Path) -> None:
    """The probe: a replaced file was cached under the old hash, so even after the original
    was restored the next run trained the wrong pixels."""
    from densestudio.ml import data as D

    path = tmp_path / "a.bmp"
    _bmp(path, 30)
    original = path.read_bytes()
    item = D.CacheItem(1, str(path), file_hash(path))
    prep = Preprocessing(16, 16, "L")
    cache = D.DecodedCache(tmp_path / "cache")
    _bmp(path, 220)  # replaced before it was ever decoded
    pixels, failures = cache.load([item], prep)
    assert [f.reason for f in failures] == [
        "the file changed since it was imported (its content differs)"]
    path.write_bytes(original)  # restored
    pixels, failures = D.DecodedCache(tmp_path / "cache").load([item], prep)
    assert not failures and int(pixels[0].float().mean()) == 30, "the original pixels"
    _bmp(path, 220)  # replaced after it was cached: the old key keeps the old content
    again, _ = D.DecodedCache(tmp_path / "cache").load([item], prep)
    assert int(again[0].float().mean()) == 30
    new_item = D.CacheItem(1, str(path), file_hash(path))  # after the re-hash: a new key
    new, failures = D.DecodedCache(tmp_path / "cache").load([new_item], prep)
    assert not failures and int(new[0].float().mean()) == 220


# ------------------------------------------------------------------ 3. checkpoint owners
OWN = {"class_names": ["ok", "ng"], "run_id": 3, "project_id": "aaa",
       "data_fingerprint": "f1"}


@pytest.mark.parametrize(("change", "named"), [
    ({"class_names": ["a", "b", "c", "d", "e"]}, "its classes are a, b, c, d, e, the run's "
                                                 "are ok, ng"),
    ({"class_names": ["ng", "ok"]}, "its classes are ng, ok"),
    ({"project_id": "bbb"}, "saved by project bbb, this is project aaa"),
    ({"run_id": 4}, "saved by run 4, not run 3"),
    ({"data_fingerprint": "f2"}, "trained on data f2, run 3's data is f1"),
])
def test_a_checkpoint_of_another_run_or_project_is_refused(change: dict, named: str) -> None:
    from densestudio.ml.checkpoint import CheckpointError, check_owner

    args = ("best.pt", 3, "aaa", ["ok", "ng"], "f1", "P.dsproj")
    check_owner(OWN, *args)
    check_owner({"class_names": ["ok", "ng"]}, *args)  # an old checkpoint: classes only
    with pytest.raises(CheckpointError, match="does not belong to run 3") as exc:
        check_owner({**OWN, **change}, *args)
    assert named in str(exc.value)


# ------------------------------------------------------------------ 12. names, temp files
@pytest.mark.parametrize("name", ["x" * 250, "x" * 248, "é" * 124, "y" * 400])
def test_a_project_name_too_long_for_the_file_system_leaves_nothing(
    tmp_path: Path, name: str
) -> None:
    """`new <248 characters>` left a 0-byte .dsproj behind (its -wal could not be made)."""
    with pytest.raises(DenseStudioError, match="the name is too long for this file system"):
        Project.create(tmp_path / "sub" / name)
    assert list(tmp_path.iterdir()) == [], "no file, not even its folder"
    Project.create(tmp_path / ("x" * 240)).close()  # the longest that fits with "-journal"


def test_a_killed_export_leaves_no_hidden_temp_file_for_good(
    project: Project, tmp_path: Path
) -> None:
    """A kill cannot clean up after itself: the next write of the same file does."""
    import subprocess
    import sys

    out = tmp_path / "labels.csv"
    child = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path\n"
        "from densestudio.core.atomic import atomic_output\n"
        "with atomic_output(Path(sys.argv[1]), 'w') as f:\n"
        "    f.write('half'); f.flush(); print('writing', flush=True); time.sleep(60)\n"),
        str(out)], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline() == "writing\n"
    child.kill()
    child.wait()
    left = list(tmp_path.glob(".labels.csv.*.tmp"))
    assert len(left) == 1, "the killed writer's temporary file"
    alive = tmp_path / f".labels.csv.{os.getppid()}.busy.tmp"  # a live writer's: kept
    alive.write_text("in progress")
    assert export_labels_csv(project, out) == 8
    assert sorted(tmp_path.glob(".labels.csv.*.tmp")) == [alive]
    assert out.read_text().startswith("path,")


# ------------------------------------------------------------------ 10. CSV encodings
def _labels_csv(p: Project, path: Path, encoding: str, bom: bytes = b"",
                author: str = "ann") -> None:
    rows = "".join(f"{i.path},ng,{author}\n" for i in p.page(limit=3))
    path.write_bytes(bom + f"path,class,author\n{rows}".encode(encoding))


@pytest.mark.parametrize(("encoding", "bom"), [
    ("utf-8", b""), ("utf-8", b"\xef\xbb\xbf"), ("utf-16-le", b"\xff\xfe"),
    ("utf-16-be", b"\xfe\xff"), ("utf-16-le", b""), ("utf-16-be", b""),
])
def test_csv_encodings_are_detected(project: Project, tmp_path: Path, encoding: str,
                                    bom: bytes) -> None:
    """A UTF-16 file (Excel's "Unicode text") read as UTF-8 found no header."""
    from densestudio.core.exchange import import_labels_csv

    project.set_labels(project.image_ids(), None)
    _labels_csv(project, tmp_path / "l.csv", encoding, bom, author="Zoë")
    report = import_labels_csv(project, tmp_path / "l.csv")
    assert report.rows == 3 and report.skipped == 0
    assert {i.labeled_by for i in project.page(limit=3)} == {"Zoë"}


@pytest.mark.parametrize(("author", "message"), [
    ("Zoë", "is not UTF-8 text: line 5 has 'Zoë' as Windows-1252 (cp1252) would read it"),
    ("x" * 65, "1 invalid row(s), so nothing was changed: line 5: An author name can have at "
               "most 64 characters."),
])
def test_a_bad_row_or_encoding_changes_nothing(
    project: Project, tmp_path: Path, author: str, message: str
) -> None:
    """A cp1252 file's 'Zoë' was stored as 'Zo\\udceb'; an invalid row was skipped while
    the others were applied."""
    from densestudio.core.exchange import import_labels_csv

    before = [(i.label_id, i.labeled_by) for i in project.page(limit=8)]
    encoding = "cp1252" if author == "Zoë" else "utf-8"
    _labels_csv(project, tmp_path / "l.csv", encoding, author="ann")
    with open(tmp_path / "l.csv", "ab") as f:  # the last row is the bad one
        f.write(f"{project.page(limit=8)[5].path},ng,{author}\n".encode(encoding))
    with pytest.raises(DenseStudioError, match=re.escape(message)) as exc:
        import_labels_csv(project, tmp_path / "l.csv")
    if author == "Zoë":
        assert "Windows-1252 (cp1252)" in str(exc.value) and "nothing was changed" in str(
            exc.value)
    assert [(i.label_id, i.labeled_by) for i in project.page(limit=8)] == before


# ------------------------------------------------------------------ 6. images and formats
def _claiming(path: Path, data_size: tuple[int, int], claim: tuple[int, int],
              fmt: str = "JPEG") -> Path:
    """An image whose header claims ``claim`` pixels but whose data holds ``data_size``."""
    import io
    import struct
    import zlib

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, data_size[::-1], np.uint8),
                    "L").save(buf, fmt)
    data = bytearray(buf.getvalue())
    if fmt == "JPEG":
        sof = data.find(b"\xff\xc0")
        data[sof + 5:sof + 9] = struct.pack(">HH", claim[1], claim[0])
    else:  # PNG: rewrite IHDR and its CRC
        data[16:24] = struct.pack(">II", *claim)
        data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(("fmt", "data_size", "claim"), [
    ("JPEG", (200, 200), (14000, 14000)), ("JPEG", (64, 48), (6000, 4000)),
    ("PNG", (200, 200), (14000, 14000)),
])
def test_images_claiming_more_than_they_hold_are_refused(
    project: Project, tmp_path: Path, fmt: str, data_size: tuple[int, int],
    claim: tuple[int, int],
) -> None:
    """A 14000 x 14000 header over 200 x 200 data trained as a 196 MP mostly-filler image."""
    from densestudio.core.imaging import ImageDecodeError, load_image

    (tmp_path / "new").mkdir()
    path = _claiming(tmp_path / "new" / f"claim.{fmt.lower()}", data_size, claim, fmt)
    report = run_import(project, [tmp_path / "new"], LABELS)
    assert report.added == 0 and len(report.skipped) == 1
    assert "claims" in report.skipped[0].reason or "truncated" in report.skipped[0].reason
    with pytest.raises(ImageDecodeError):
        load_image(path, max_side=64)


def test_formats_pillow_reads_are_imported_and_the_rest_reported(
    project: Project, tmp_path: Path
) -> None:
    folder = tmp_path / "more" / "ok"
    folder.mkdir(parents=True)
    for i, (name, fmt) in enumerate([("a.jfif", "JPEG"), ("b.pgm", "PPM"), ("c.ppm", "PPM"),
                                     ("d.tga", "TGA"), ("e.dib", "BMP")]):
        img = noise((20, 20), "RGB" if name.endswith((".ppm", ".tga")) else "L", seed=40 + i)
        img.save(folder / name, format=fmt)
    (folder / "notes.txt").write_text("x")
    (folder / "raw.cr2").write_bytes(b"\x00" * 10)
    (folder / "other.cr2").write_bytes(b"\x01" * 10)
    report = run_import(project, [tmp_path / "more"], LABELS)
    assert report.added == 5 and not report.skipped
    assert ("3 other file(s) are not image types DenseStudio reads and were skipped: .cr2 2, "
            ".txt 1") in report.notes


# ------------------------------------------------------------------ 11. group patterns
@pytest.mark.parametrize("pattern", [r"(a+)+$", r"(\w+\s?)*$", r"(a|ab)*c", r"(?:x*)*y",
                                     r"(lot(\d+)?)+_", r"(?=(a+)+)b"])
def test_group_patterns_that_can_hang_are_refused(project: Project, pattern: str) -> None:
    """`--group-by 'regex:(a+)+$'` hung a re-split on a name like aaaa...aab."""
    from densestudio.core.store import set_split_group_by

    with pytest.raises(DenseStudioError, match="repeats something that itself repeats"):
        set_split_group_by(project, "regex:" + pattern)
    assert project.get_meta("split_group_by") in (None, "")


@pytest.mark.parametrize("pattern", [r"(lot\d+)", r"^([A-Z]+)_\d+", r"(\d{3}-)+x",
                                     r"(lot|LOT)\d+", r"([a-z]+)-(\d{3})"])
def test_ordinary_group_patterns_still_work(project: Project, pattern: str) -> None:
    from densestudio.core.store import set_split_group_by

    set_split_group_by(project, "regex:" + pattern)


# ------------------------------------------------------------------ 4. a -wal from elsewhere
_WRITER = """
import os, sqlite3, sys
con = sqlite3.connect(sys.argv[1])
con.execute('PRAGMA wal_autocheckpoint=0')
def add(prefix, n0, n1):
    for i in range(n0, n1):
        con.execute("INSERT INTO label_class (name, color, position, created_at) VALUES "
                    "(?, '#000000', ?, '2024-01-01')", (prefix * 300 + str(i), i))
        con.commit()
add('x', 0, 300)
con.execute('PRAGMA wal_checkpoint(TRUNCATE)')  # in the file; then more, only in the -wal
add('y', 300, 600)
os._exit(0)  # a crash: the -wal stays
"""


def _crash_with_a_wal(path: Path) -> None:
    import subprocess
    import sys

    subprocess.run([sys.executable, "-c", _WRITER, str(path)], check=True)
    assert path.with_name(path.name + "-wal").stat().st_size > 0


def test_a_restored_backup_next_to_an_old_wal_is_not_replayed_into(tmp_path: Path) -> None:
    """The probe: `cp backup.dsproj P.dsproj` beside a crashed session's P.dsproj-wal was
    replayed into and left "malformed"; the message then said to restore from a backup."""
    path = tmp_path / "P.dsproj"
    with Project.create(path) as p:
        p.add_class("kept")
        p.backup(tmp_path / "backup.dsproj")
    _crash_with_a_wal(path)
    os.utime(path.with_name("P.dsproj-wal"), ns=(1, 1_000_000_000))  # written before...
    Path(path).write_bytes((tmp_path / "backup.dsproj").read_bytes())  # ...the restore
    with Project.open(path) as p:
        assert [c.name for c in p.classes()] == ["kept"]
    aside = list(tmp_path.glob("P.dsproj-wal.stale-*"))
    assert len(aside) == 1 and aside[0].stat().st_size > 0, "moved aside, not deleted"
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    con.close()


def test_a_wal_of_its_own_project_is_replayed(tmp_path: Path) -> None:
    """After a crash the -wal holds the last changes: they are kept (even when the file was
    written after the log, as a checkpoint does)."""
    path = tmp_path / "P.dsproj"
    Project.create(path).close()
    _crash_with_a_wal(path)
    os.utime(path.with_name("P.dsproj-wal"), ns=(1, 1_000_000_000))
    with Project.open(path) as p:
        assert len(p.classes()) == 600
    assert not list(tmp_path.glob("*.stale-*"))
