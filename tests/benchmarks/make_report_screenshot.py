"""Screenshots of the validation report (headless Chromium; no display needed).

    .venv/bin/python tests/benchmarks/make_report_screenshot.py [--out docs/screenshots]

Makes the app's demo images (ok / scratch / spot / crack), trains two short runs of the
compact DenseNet-BC at 64 px, saves an OK/NG operating point ("ok" is good, a miss costs
10), approves the first run, marks three images must-pass, and writes the second run's
report. Then prints it to PDF and screenshots its pages:
- report.png: summary, data and (further down) metrics with intervals;
- report_gate.png: the OK/NG operating point, the release gate and the mistakes' heatmaps.
Prints the training figures, the gate verdict and the report's size.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def main() -> int:
    from densestudio.core import runs, signoff
    from densestudio.core.demo import make_demo_images
    from densestudio.core.importer import ImportOptions, run_import
    from densestudio.core.store import Project, lock_test_split
    from densestudio.ml import operating_point as op
    from densestudio.ml.config import TrainConfig
    from densestudio.ml.gate import compare_runs_for_gate
    from densestudio.ml.report import write_report
    from densestudio.ml.threads import limited_threads
    from densestudio.ml.train import fit

    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--per-class", type=int, default=60)
    parser.add_argument("--epochs", type=int, default=24)
    parser.add_argument("--keep", type=Path, help="also keep the project and report here")
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("chromium is not installed (sh tests/setup_services.sh installs it)")
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = args.keep or Path(tmp_name)
        tmp.mkdir(parents=True, exist_ok=True)
        make_demo_images(tmp / "demo images", per_class=args.per_class)
        with Project.create(tmp / "Demo inspection.dsproj") as project:
            run_import(project, [tmp / "demo images"], ImportOptions(labels_from_subfolders=True))
            lock_test_split(project, True)
            ids = []
            for seed, epochs in ((0, max(2, args.epochs // 2)), (1, args.epochs)):
                t0 = time.perf_counter()
                cfg = TrainConfig(arch="densenet_bc_tiny", img_size=64, epochs=epochs,
                                  batch_size=32, device="cpu", seed=seed,
                                  name=f"{epochs} epochs")
                with limited_threads():
                    ids.append(fit(project, cfg))
                m = runs.get_run(project, ids[-1]).metrics
                print(f"run {ids[-1]}: {epochs} epochs in {time.perf_counter() - t0:.0f} s, "
                      f"test accuracy {m.get('test_acc', 0) * 100:.1f} %")
            for run_id in ids:
                probs, true = op.stored_predictions(project, run_id, "val")
                p_good, is_good = op.good_scores(probs, true, list(
                    runs.get_run(project, run_id).class_names).index("ok"))
                curve = op.tradeoff_curve(p_good, is_good, steps=1001)
                t = op.best_threshold(curve, 10.0, 1.0)
                op.save_operating_point(project, run_id, op.OperatingPoint(
                    "ok", t, max(0.0, t - 0.03), min(1.0, t + 0.03), 10.0, 1.0))
            signoff.approve_run(project, ids[0], "line 3 trial: no escapes in 2 shifts",
                                by="quality lead")
            train_ids = [r.image_id for r in runs.run_images(project, ids[0], "train")]
            signoff.add_golden(project, train_ids[:3], note="customer complaint parts")
            print(compare_runs_for_gate(project, ids[1]).verdict)
            written = write_report(project, tmp / "report.html", ids[1])
        print(f"report: {written.size_bytes / 1024:.0f} KiB, {written.path}")
        offline = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                   "--disable-background-networking", f"--user-data-dir={tmp / 'profile'}",
                   "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND"]
        pdf = tmp / "report.pdf"
        subprocess.run([*offline, "--no-pdf-header-footer", f"--print-to-pdf={pdf}",
                        written.path.as_uri()], capture_output=True, timeout=300, check=True)
        pdftoppm = shutil.which("pdftoppm")
        if pdftoppm is None:
            print("pdftoppm (poppler-utils) is missing: PDF written, no page images")
            return 2
        subprocess.run([pdftoppm, "-r", "70", "-png", str(pdf), str(tmp / "page")],
                       check=True, timeout=300)
        pages = sorted(tmp.glob("page-*.png"))
        print(f"PDF: {len(pages)} pages")
        shots = {"report.png": ("summary", "data", "metrics"),
                 "report_gate.png": ("operating-point", "gate", "mistakes")}
        from densestudio.ml.report import SECTIONS

        first_page = section_pages(pdf, len(pages), dict(SECTIONS))
        for name, keys in shots.items():
            side_by_side([pages[first_page[k]] for k in keys], args.out / name)
            print(f"{name}: {', '.join(keys)} (pages "
                  f"{', '.join(str(first_page[k] + 1) for k in keys)})")
    return 0


def section_pages(pdf: Path, n_pages: int, titles: dict[str, str]) -> dict[str, int]:
    """The page (0-based) each section starts on: the page whose text begins with its
    title (the summary shares the first page with the report's heading)."""
    found = {"summary": 0}
    for page in range(n_pages):
        text = subprocess.run(["pdftotext", "-f", str(page + 1), "-l", str(page + 1),
                               str(pdf), "-"], capture_output=True, text=True,
                              check=True).stdout.strip()
        for key, title in titles.items():
            if key not in found and text.startswith(title):
                found[key] = page
    return found


def side_by_side(pages: list[Path], out: Path) -> None:
    from PIL import Image

    images = [Image.open(p).convert("RGB") for p in pages]
    w, h = max(i.width for i in images), max(i.height for i in images)
    sheet = Image.new("RGB", (w * len(images) + 16 * (len(images) + 1), h + 32), "#d5d9de")
    for n, img in enumerate(images):
        sheet.paste(img, (16 + n * (w + 16), 16))
    sheet.save(out, optimize=True)


if __name__ == "__main__":
    raise SystemExit(main())
