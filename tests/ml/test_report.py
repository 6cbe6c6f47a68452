"""The validation report: every section, nothing loaded from the network, and it renders in
a real headless browser (Debian's Chromium, installed by tests/setup_services.sh) to a PDF
with one section per page. Also: the gate predicts must-pass images that have no stored
prediction, and export defaults to the approved run."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch

from densestudio.cli import main
from densestudio.core import runs, signoff
from densestudio.core.store import Project
from densestudio.ml import operating_point as op
from densestudio.ml.gate import compare_runs_for_gate
from densestudio.ml.report import SECTIONS, record_export, write_report
from densestudio.ml.train import fit

from .conftest import add_images, tiny_config, write_images

Signed = tuple[Project, int, int, Path]  # project, approved run, candidate run, folder

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PDFTOTEXT = shutil.which("pdftotext")


def crafted_predictions(project: Project, run_id: int, wrong: set[int]) -> None:
    """Replace the run's val/test predictions: right (P = 0.9) except on ``wrong`` (a
    confident 0.96 for the next class), so the gate and the mistakes are known exactly."""
    k = len(runs.get_run(project, run_id).class_names)
    for subset in ("val", "test"):
        preds = []
        for r in runs.run_images(project, run_id, subset):
            pred = (r.class_index + 1) % k if r.image_id in wrong else r.class_index
            top = 0.96 if r.image_id in wrong else 0.9
            probs = np.full(k, (1 - top) / (k - 1), np.float32)
            probs[pred] = top
            preds.append(runs.PredictionInfo(r.image_id, subset, r.class_index, pred, top,
                                             float(-np.log(probs[r.class_index])), probs))
        runs.save_predictions(project, run_id, subset, preds)


def clone_run(project: Project, source: int) -> int:
    """A second finished run with the source's weights, epochs and metrics."""
    info = runs.get_run(project, source)
    snapshot = [(r.image_id, r.class_index, r.split) for r in runs.run_images(project, source)]
    run_id = runs.create_run(project, name="candidate", config_json=json.dumps(info.config),
                             class_names=info.class_names, snapshot=snapshot)
    best = runs.run_dir(project, run_id) / "best.pt"
    best.parent.mkdir(parents=True, exist_ok=True)
    ckpt = torch.load(info.checkpoint_best, map_location="cpu", weights_only=True)
    ckpt["meta"]["run_id"] = run_id  # its own run's model, as training would have saved it
    torch.save(ckpt, best)
    for m in runs.epoch_metrics(project, source):
        runs.update_run(project, run_id, epoch_metric=m)
    runs.update_run(project, run_id, status="finished", metrics=info.metrics,
                    checkpoint_best=str(best), best_epoch=info.best_epoch,
                    epochs_done=info.epochs_done, device="cpu", finished=True)
    return run_id


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Signed]:
    tmp = tmp_path_factory.mktemp("signed")
    project = Project.create(tmp / "p.dsproj")
    add_images(project, write_images(tmp / "imgs", 10))
    first = fit(project, tiny_config(epochs=1))
    second = clone_run(project, first)
    test_ids = [r.image_id for r in runs.run_images(project, first, "test")]
    assert len(test_ids) >= 3
    crafted_predictions(project, first, set())
    crafted_predictions(project, second, set(test_ids[:2]))
    op.save_operating_point(project, second, op.OperatingPoint("dark", 0.5, cost_miss=10))
    signoff.approve_run(project, first, "baseline for line 3", by="qa")
    train_image = runs.run_images(project, first, "train")[0].image_id
    signoff.add_golden(project, [train_image])
    yield project, first, second, tmp
    project.close()


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.ids: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        for name, value in attrs:
            if name in ("src", "href", "xlink:href", "srcset", "poster", "data", "action"):
                self.refs.append(value or "")
            if name == "id":
                self.ids.append(value or "")


def test_gate_predicts_must_pass_images_without_stored_predictions(signed: Signed) -> None:
    project, first, second, _ = signed
    g = compare_runs_for_gate(project, second)
    assert g.against == first and g.against_approved and g.n_golden == 1
    (golden,) = [i for i in g.images if i.golden]
    assert golden.split == "train" and golden.against_pred is not None
    assert any("training data" in w for w in g.warnings)
    assert len(g.newly_wrong) == 2 and not g.newly_right  # the two flipped predictions
    assert not any(p.image_id == golden.image_id for p in runs.predictions(project, second))


def test_report_has_every_section_and_loads_nothing(signed: Signed) -> None:
    project, first, second, tmp = signed
    out = write_report(project, tmp / "report.html", second)
    html = out.path.read_text(encoding="utf-8")
    parser = _Refs()
    parser.feed(html)
    assert parser.refs, "the page has images and links"
    external = [r for r in parser.refs if not (r.startswith("data:") or r.startswith("#"))]
    assert external == []
    assert "http://" not in html and "https://" not in html and "url(" not in html
    assert {"script", "link", "iframe"}.isdisjoint(parser.tags)
    assert [i for i in parser.ids if i in dict(SECTIONS)] == [k for k, _ in SECTIONS]
    for _, title in SECTIONS:
        assert f"<h2>{title}</h2>" in html
    assert "@media print" in html and "break-before: page" in html
    assert html.count('alt="heatmap of image') == 2  # the two mistakes, with heatmaps
    assert f"approved run {first}" in html and "2 newly wrong" in html
    assert "miss rate at most" in html and "299 defect images" in html
    # the summary leads with what the OK/NG point decides, argmax figures follow
    assert html.index("Defects passed as good (test)") < html.index("Accuracy (test)")
    assert "Good parts rejected" in html and "Sent to a person" in html
    assert "intact" in html and "baseline for line 3" in html
    assert "<svg" in html and "Recall per class" in html and 'class="confusion"' in html
    assert "keeping the aspect ratio" in html  # the run's preprocessing, from its checkpoint
    assert out.subset == "test" and out.size_bytes == len(html.encode())


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (tests/setup_services.sh "
                                             "installs Debian's package with apt-get as root)")
def test_report_renders_in_headless_chromium_offline(signed: Signed) -> None:
    project, _first, second, tmp = signed
    report = write_report(project, tmp / "browser.html", second).path
    profile = tmp / "chromium-profile"
    offline = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--disable-extensions", f"--user-data-dir={profile}",
               # any request would go to a dead proxy / unresolvable host: nothing can load
               "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND"]
    pdf = tmp / "report.pdf"
    subprocess.run([*offline, "--no-pdf-header-footer", f"--print-to-pdf={pdf}",
                    report.as_uri()], capture_output=True, timeout=180, check=False)
    assert pdf.is_file() and pdf.read_bytes()[:5] == b"%PDF-"
    dom = subprocess.run([*offline, "--dump-dom", report.as_uri()], capture_output=True,
                         text=True, timeout=180, check=False).stdout
    for key, title in SECTIONS:
        assert f'<section id="{key}"><h2>{title}</h2>' in dom
    assert dom.count("<svg") >= 5 and 'alt="heatmap of image' in dom
    png = tmp / "report.png"
    subprocess.run([*offline, "--window-size=1000,2200", f"--screenshot={png}",
                    report.as_uri()], capture_output=True, timeout=180, check=False)
    from PIL import Image

    with Image.open(png) as shot:
        assert shot.size == (1000, 2200)
        assert len(np.unique(np.asarray(shot.convert("L")))) > 20  # drawn, not blank
    if PDFTOTEXT is None:
        pytest.skip("pdftotext (poppler-utils) missing: PDF written, its text not checked")
    text = subprocess.run([PDFTOTEXT, "-layout", str(pdf), "-"], capture_output=True,
                          text=True, timeout=60, check=True).stdout
    pages = text.split("\f")
    for _, title in SECTIONS:
        assert title in text
    # one section per printed page: each title starts a page
    starts = [p.strip().splitlines()[0].strip() for p in pages if p.strip()]
    assert len(pages) >= len(SECTIONS)
    assert all(any(s.startswith(title) for s in starts) for _, title in SECTIONS[1:])


def test_export_uses_the_approved_run_and_the_report_shows_it(
    signed: Signed, capsys: pytest.CaptureFixture[str]
) -> None:
    project, first, second, tmp = signed
    model = tmp / "model.pt"
    assert main(["export", str(project.path), str(model)]) == 0
    captured = capsys.readouterr()
    assert f"Exported run {first}" in captured.out and "not approved" not in captured.err
    assert main(["export", str(project.path), str(tmp / "cand.pt"), "--run", str(second)]) == 0
    assert f"run {second} is not approved" in capsys.readouterr().err
    last = runs.get_run(project, first).extra["last_export"]
    assert last["path"] == str(model.absolute()) and last["by"]
    record_export(project, second, tmp / "cand.pt", parity={"max_abs_diff": 1.2e-6,
                                                             "agreement": "100 %"})
    html = write_report(project, tmp / "r2.html", second,).path.read_text()
    assert "cand.pt" in html and "max_abs_diff" in html and "Parity of the exported model" in html
    # the frame-check ranges the file carries: over all training images and per class
    assert "<h3>Frame checks</h3>" in html and "median brightness: " in html
    assert "<th>sharpness (Laplacian / contrast)</th>" in html
    assert main(["report", str(project.path), str(tmp / "cli.html"), "--run", str(second),
                 "--no-heatmaps"]) == 0
    assert "Wrote the validation report" in capsys.readouterr().out
    assert 'alt="heatmap' not in (tmp / "cli.html").read_text()
