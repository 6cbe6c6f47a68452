"""Screenshots of the sign-off windows (offscreen; no display, no training, a few seconds).

    .venv/bin/python tests/benchmarks/make_signoff_screenshots.py [--out docs/screenshots]

Uses the GUI tests' crafted project (tests/ui/signoff_fixtures.py: 40 good and 45 scratch
images the code generates, all in a locked test split, two runs with stored predictions):
run A "baseline" gets every image right and is approved; run B "candidate" calls one
scratch good. Writes:
- operating_point_intervals.png: run B's OK/NG window with the miss and false-reject rates
  and their exact 95 % intervals, the threshold picked so that the miss rate's upper bound
  is at most 10 %, and how many defect images a 1 % claim would need;
- gate.png: the release gate of run B against the approved run A, with the missed scratch
  marked must-pass: FAIL, the metric changes with intervals, the failing image as a tile.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.benchmarks.make_screenshots import isolate_settings, open_window, review_run, wait
from tests.ui.signoff_fixtures import MISSED, image_id_of, make_signoff_project


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="ds-shots-signoff-"))
    isolate_settings(tmp)
    os.environ["DENSESTUDIO_USER"] = "Q. Inspector"
    from densestudio.core import signoff

    path, run_a, run_b = make_signoff_project(tmp / "Line 3 scratches")
    app, window = open_window()
    try:
        window.open_project(path)
        project = window.controller.project
        signoff.approve_run(project, run_a, "line 3 trial: no escapes in 2 shifts")
        signoff.add_golden(project, [image_id_of(project, MISSED)], note="the customer's reject")
        review_run(app, window, run_b)
        wait(app, 0.3)

        dialog = window.review_panel.show_operating_point()
        dialog.resize(1000, 720)
        panel = dialog.panel
        panel.good_combo.setCurrentIndex(panel.good_combo.findText("ok"))
        panel.target.setValue(10.0)
        choice = panel.pick_for_target()
        wait(app, 0.5)
        dialog.grab().save(str(args.out / "operating_point_intervals.png"))
        print(f"operating_point_intervals.png: {choice.message}")
        dialog.close()

        gate = window.review_panel.show_gate()
        finished: list = []
        gate.gateFinished.connect(finished.append)
        gate.run_gate()
        wait(app, 60, lambda: bool(finished))
        wait(app, 10, lambda: window.loader.pending == 0)
        wait(app, 0.5)
        gate.grab().save(str(args.out / "gate.png"))
        print(f"gate.png: {finished[0].verdict}")
        gate.close()
        window.close_project()
    finally:
        window.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
