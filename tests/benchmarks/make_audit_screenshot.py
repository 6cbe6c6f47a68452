"""Screenshot of the "Label audit" tab (suspected label errors) on NEU surface defects.

    .venv/bin/python tests/benchmarks/make_audit_screenshot.py [--out docs/screenshots]
        [--per-class 100] [--flip 0.05] [--epochs 12]

Links ``--per-class`` NEU images per class into a temporary folder (never copied into the
repository), imports them with sub-folder names as classes, flips ``--flip`` of the labels
to another class (seeded), runs the label audit (5 folds, compact model, 64 px) and saves the
window with the Label audit tab, the most suspicious image selected and one relabeled, as
label_errors.png. Offscreen; no display needed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.benchmarks.make_screenshots import (
    NEU,
    isolate_settings,
    neu_subset,
    open_window,
    wait,
)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--flip", type=float, default=0.05)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path,
                        help="keep the project here and reuse its audit on the next run")
    args = parser.parse_args()
    if not NEU.is_dir():
        print(f"NEU images not found at {NEU}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = args.work or Path(tempfile.mkdtemp(prefix="ds-audit-shot-"))
    tmp.mkdir(parents=True, exist_ok=True)
    isolate_settings(tmp)
    from densestudio.core.store import Project
    from densestudio.ml import crossval

    path = tmp / "projects" / "Steel strip inspection.dsproj"
    reuse = path.is_file()
    if reuse:
        with Project.open(path) as project:
            reuse = crossval.load_audit(project) is not None
    if not reuse:
        for old in (tmp / "projects", tmp / "NEU surface defects"):
            shutil.rmtree(old, ignore_errors=True)
        make_audited_project(path, neu_subset(tmp, args.per_class), args)

    app, window = open_window()
    window.open_project(path)
    panel = window.audit_panel
    window.show_panel(panel)
    wait(app, 0.3)
    # Show the fix-it flow: the second suspect relabeled with its suggestion, the first selected.
    ids = panel.model.ids
    if len(ids) >= 2:
        panel.gallery.go_to_row(1)
        suggested = panel.overlay[ids[1]].predicted_class_id
        if suggested is not None:
            panel.relabel_selected(suggested)
    panel.gallery.go_to_row(0)
    panel.gallery.setFocus()
    wait(app, 10, lambda: window.loader.pending == 0)
    wait(app, 0.5)
    out = args.out / "label_errors.png"
    window.grab().save(str(out))
    window.close()
    if args.work is None:
        shutil.rmtree(tmp, ignore_errors=True)
    print("wrote", out)
    return 0


def make_audited_project(path: Path, images: Path, args: argparse.Namespace) -> None:
    from densestudio.core.importer import ImportOptions, run_import
    from densestudio.core.store import Project
    from densestudio.ml import crossval
    from densestudio.ml.threads import limited_threads
    from tests.benchmarks.bench_label_errors import flip_labels

    path.parent.mkdir(parents=True, exist_ok=True)
    with Project.create(path) as project:
        run_import(project, [images], ImportOptions(labels_from_subfolders=True))
        wrong = flip_labels(project, args.flip, args.seed)
        n = project.count_images()
        cfg = crossval.audit_config(n, "cpu").with_(epochs=args.epochs, device="cpu")
        t = time.perf_counter()
        with limited_threads():
            audit = crossval.cross_validate(project, 5, cfg)
        top = [audit.image_id(i) for i in audit.suspects()[: len(wrong)]]
        print(f"audit of {n} images with {len(wrong)} flipped: {time.perf_counter() - t:.0f} s, "
              f"{len(set(top) & wrong)}/{len(wrong)} flipped in the top {len(wrong)}")


if __name__ == "__main__":
    raise SystemExit(main())
