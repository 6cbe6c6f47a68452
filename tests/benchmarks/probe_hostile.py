"""Hostile-input probe of the command line: about 150 commands on odd files, projects, models
and numbers, each under a timeout. A command is BAD when it prints a traceback, hangs, exits
with a code other than 0, 1 or 2, or does not give the exit code it must.

    .venv/bin/python tests/benchmarks/probe_hostile.py [WORKDIR]   (default: a temporary folder)

Exit code 1 when any command is BAD. The regression tests of what it found are in
tests/cli/test_cli_hostile.py; this script is the wider sweep that found them.
"""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

CLI = [sys.executable, "-m", "densestudio"]
TINY = ["--arch", "densenet_bc_tiny", "--img-size", "32", "--device", "cpu"]


class Probe:
    def __init__(self) -> None:
        self.results: list[tuple[str, object, bool, str]] = []

    def run(self, name: str, *args: object, timeout: float = 60, expect: int | None = None
            ) -> None:
        try:
            p = subprocess.run([*CLI, *(str(a) for a in args)], capture_output=True, text=True,
                               timeout=timeout, errors="replace")
        except subprocess.TimeoutExpired:
            self.results.append((name, "TIMEOUT", True, ""))
            return
        out = (p.stdout + p.stderr).strip()
        bad = "Traceback" in out or p.returncode not in (0, 1, 2)
        bad = bad or (expect is not None and p.returncode != expect)
        self.results.append((name, p.returncode, bad, " / ".join(out.splitlines()[-2:])))

    def report(self) -> int:
        for name, code, bad, tail in self.results:
            print(f"{'BAD ' if bad else 'ok  '}{name:48.48} rc={code!s:8} {tail[:200]}")
        n_bad = sum(bad for *_, bad, _ in self.results)
        print(f"\n{len(self.results)} commands, {n_bad} bad")
        return 1 if n_bad else 0


def noise(path: Path, size: tuple[int, int] = (64, 64), mode: str = "RGB", seed: int = 0,
          fmt: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).convert(mode).save(path, format=fmt)


def png_bomb(path: Path) -> None:
    """A PNG header that claims 100000 x 100000 pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    header = struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b""))


def hostile_folder(h: Path, good_png: Path) -> None:
    h.mkdir()
    (h / "empty.png").write_bytes(b"")
    (h / "text.jpg").write_text("hello, not a jpeg")
    data = good_png.read_bytes()
    (h / "trunc.png").write_bytes(data[: len(data) // 2])
    for name, mode in (("cmyk.jpg", "CMYK"), ("la.png", "LA"), ("pal.png", "P"),
                       ("bw.png", "1"), ("i16.png", "I;16"), ("f.tiff", "F")):
        noise(h / name, mode=mode)
    noise(h / "strip.png", size=(20000, 3))
    noise(h / "tall.png", size=(2, 9000))
    noise(h / "one.png", size=(1, 1))
    noise(h / "pic.webp", fmt="WEBP")
    frames = [Image.new("RGB", (32, 32), (i * 40, 0, 0)) for i in range(3)]
    frames[0].save(h / "anim.gif", save_all=True, append_images=frames[1:])
    png_bomb(h / "bomb.png")
    (h / "dir.jpg").mkdir()
    os.symlink("loop2.png", h / "loop1.png")
    os.symlink("loop1.png", h / "loop2.png")
    os.symlink("/nonexistent/x.png", h / "dangling.png")
    for name in ("new\nline.png", "-dash.png", "sp ace #%20?.png", "x" * 250 + ".png"):
        noise(h / name, seed=len(name))
    os.mkfifo(h / "fifo.png")
    rotated = Image.new("RGB", (40, 20), "red")
    exif = rotated.getexif()
    exif[0x0112] = 6
    rotated.save(h / "rot.jpg", exif=exif)


def main() -> int:
    work = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="probe-"))
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    os.chdir(work)
    probe = Probe()
    run = probe.run
    for cls, n in (("good", 20), ("scratch", 8), ("dent", 6)):
        for i in range(n):
            noise(work / "data" / cls / f"{cls}_{i}.png", seed=hash((cls, i)) % 10000)
    run("new", "new", "p.dsproj", expect=0)
    run("import labeled", "import", "p.dsproj", "data", "--labels-from-subfolders", expect=0)
    hostile_folder(work / "hostile", work / "data/good/good_0.png")
    run("import hostile", "import", "p.dsproj", "hostile", expect=1)
    run("import hostile again", "import", "p.dsproj", "hostile", expect=1)
    for target in ("/dev/null", "hostile/fifo.png", "nope"):
        run(f"import {target}", "import", "p.dsproj", target)
    run("info", "info", "p.dsproj", expect=0)

    # Projects that are not projects
    Path("zero.dsproj").write_bytes(b"")
    Path("text.dsproj").write_text("not sqlite")
    Path("dirproj.dsproj").mkdir()
    os.mkfifo("fifo.dsproj")
    for name in ("zero.dsproj", "text.dsproj", "dirproj.dsproj", "missing.dsproj", "fifo.dsproj",
                 "/dev/zero", "", "data/good/good_0.png", "sqlite:///x.db", "http://x"):
        run(f"info {name!r}", "info", name, expect=2)
        run(f"import into {name!r}", "import", name, "data", expect=2)
    run("new existing", "new", "p.dsproj", expect=2)
    run("new on a folder", "new", "dirproj.dsproj", expect=2)
    run("new empty name", "new", "", expect=2)
    run("new url-like name", "new", "other.db?.dsproj", expect=0)
    run("new under a file", "new", "zero.dsproj/x.dsproj", expect=2)

    # Numbers
    for ratios in ("0.5,0.5", "1e309,0,0", "0,0,0", "inf,1,1", "1,,1", "abc", "nan,nan,nan"):
        run(f"split --ratios {ratios}", "split", "p.dsproj", f"--ratios={ratios}", expect=2)
    for args in (["train", "p.dsproj", "--minutes", "nan"], ["train", "p.dsproj", "--epochs", "0"],
                 ["train", "p.dsproj", "--lr", "nan"], ["train", "p.dsproj", "--batch-size", "0"],
                 ["train", "p.dsproj", "--img-size", "100000"],
                 ["train", "p.dsproj", "--patience", "-3"], ["train", "p.dsproj", "--resume", "99"],
                 ["operating-point", "p.dsproj", "--max-miss-rate", "2"],
                 ["operating-point", "p.dsproj", "--threshold", "nan"],
                 ["report", "p.dsproj", "r.html", "--mistakes", "-5"],
                 ["history", "p.dsproj", "--limit", "-1"], ["audit", "p.dsproj", "--folds", "50"],
                 ["duplicates", "p.dsproj", "--max-distance", "9"]):
        run(" ".join(args[:1] + args[2:]), *args, timeout=120, expect=2)

    # CSV in and out
    csvs = {"binary.csv": b"\x00\xff\xfe" * 100, "nocols.csv": b"a,b\n1,2\n", "empty.csv": b"",
            "bom.csv": "\ufeffpath,class\ndata/good/good_1.png,scratch\n".encode(),
            "noclass.csv": b"path,class\ndata/good/good_1.png,\n",
            "huge.csv": b"path,class\n" + b"x" * 2_000_000 + b",good\n",
            "newline.csv": b'path,class\ndata/good/good_2.png,"a\nb"\n'}
    for name, content in csvs.items():
        Path(name).write_bytes(content)
        run(f"import-labels {name}", "import-labels", "p.dsproj", name)
    run("import-labels a folder", "import-labels", "p.dsproj", "hostile", expect=2)
    for out in ("/dev/full", "hostile", "new-dir/labels.csv"):
        run(f"export-labels {out}", "export-labels", "p.dsproj", out)

    # Sign-off records on a project without runs
    run("history of a missing image", "history", "p.dsproj", "nope.png", expect=2)
    run("golden add a missing image", "golden", "p.dsproj", "add", "nope.png", expect=2)
    run("approve a missing run", "approve", "p.dsproj", "--run", "99", "--why", "x", expect=2)
    run("gate a missing run", "gate", "p.dsproj", "--candidate", "99", expect=2)
    run("verify", "verify", "p.dsproj", expect=0)

    # Training on damaged data
    run("new empty", "new", "e.dsproj")
    run("train with no labels", "train", "e.dsproj", *TINY, "--epochs", "1", expect=2)
    os.remove("data/good/good_3.png")
    Path("data/good/good_3.png").mkdir()
    os.remove("data/good/good_4.png")
    Path("data/good/good_5.png").write_bytes(b"garbage")
    run("train on damaged data", "train", "p.dsproj", *TINY, "--epochs", "2", timeout=300,
        expect=0)
    run("evaluate", "evaluate", "p.dsproj", timeout=120, expect=0)
    run("export with no run", "export", "e.dsproj", "m.onnx", expect=2)
    run("export onnx", "export", "p.dsproj", "m.onnx", timeout=180, expect=0)
    run("export into a folder", "export", "p.dsproj", "hostile", timeout=180, expect=0)
    run("report into a folder", "report", "p.dsproj", "hostile", "--no-heatmaps", timeout=180,
        expect=0)

    # Models that are not models, and images that are not images
    Path("zero.onnx").write_bytes(b"")
    Path("junk.onnx").write_bytes(os.urandom(1000))
    Path("trunc.onnx").write_bytes(Path("m.onnx").read_bytes()[:5000])
    os.mkfifo("fifo.onnx")
    for model in ("zero.onnx", "junk.onnx", "trunc.onnx", "fifo.onnx", "/dev/zero", "hostile",
                  "nomodel.onnx"):
        run(f"predict with {model}", "predict", model, "data/scratch", expect=2)
    Path("empty-folder").mkdir()
    for target in ("hostile", "hostile/text.jpg", "hostile/bomb.png", "hostile/strip.png",
                   "hostile/i16.png", "hostile/fifo.png", "/dev/zero", "empty-folder"):
        run(f"predict {target}", "predict", "m.onnx", target, timeout=60)
    run("predict --csv a folder", "predict", "m.onnx", "data/scratch", "--csv", "hostile",
        expect=2)
    run("predict --csv /dev/full", "predict", "m.onnx", "data/scratch", "--csv", "/dev/full",
        expect=2)
    run("operating-point, unknown good class", "operating-point", "p.dsproj", "--good", "nope",
        timeout=120, expect=2)
    run("relink a missing folder", "relink", "p.dsproj", "nope", expect=2)
    run("info at the end", "info", "p.dsproj", expect=0)
    run("verify at the end", "verify", "p.dsproj", expect=0)

    # SIGTERM mid-training: stopped and resumable, not "running" for ever
    proc = subprocess.Popen([*CLI, "train", "p.dsproj", *TINY, "--epochs", "900"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(15)
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(120)
    probe.results.append(("SIGTERM during train", code, code != 130, ""))
    run("evaluate the stopped run", "evaluate", "p.dsproj", "--run", "2", timeout=120, expect=0)
    return probe.report()


if __name__ == "__main__":
    sys.exit(main())
