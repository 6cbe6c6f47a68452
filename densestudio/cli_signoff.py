"""Sign-off commands: history, verify, golden, approve, gate, report.

Registered by ``cli.py`` (``add_signoff_commands``); each drives core/ml without Qt and turns
user errors into ``DenseStudioError`` (one line, exit code 2, printed by ``cli.main``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from densestudio.cli_types import COUNT, RUN_ID, author
from densestudio.core.errors import DenseStudioError

if TYPE_CHECKING:  # imported lazily at run time, like cli.py
    from densestudio.core.store import Project

EXIT_OK, EXIT_FAIL = 0, 1


def _open(path: str) -> Project:
    from densestudio.core.store import Project

    return Project.open(path)


def _latest_finished(project: Project) -> int:
    from densestudio.core import runs

    latest = runs.latest_run(project, "finished")
    if latest is None:
        raise DenseStudioError("This project has no finished training run; train one first.")
    return latest.id


# ------------------------------------------------------------------ history / verify
def cmd_history(args: argparse.Namespace) -> int:
    from densestudio.core import history

    with _open(args.project) as project:
        if args.image:
            info = history.find_image(project, args.image)
            events = history.image_history(project, info.id)
            label = next((c.name for c in project.classes() if c.id == info.label_id),
                         "(unlabeled)")
            print(f"Image {info.id}: {info.path}")
            print(f"  now: {label}" + (f", labeled by {info.labeled_by}" if info.labeled_by
                                       else ""))
            if not events:
                print("  no label changes recorded"
                      + (" (labeled before label history was kept)" if info.label_id else ""))
            for e in events:
                print(f"  {e.describe()}")
        else:
            total = history.history_count(project)
            events = history.all_history(project, limit=args.limit, newest_first=True)[::-1]
            print(f"Label history: {total} change(s)"
                  + (f", the last {len(events)} shown" if len(events) < total else ""))
            for e in events:
                print(f"  #{e.id:<6} image {e.image_id:<7} {e.describe()}")
    if args.verify:
        return cmd_verify(args)
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    from densestudio.core.signoff import verify_project

    with _open(args.project) as project:
        report = verify_project(project)
    for chain in report.chains:
        state = "intact" if chain.ok else f"{len(chain.problems)} problem(s)"
        print(f"{chain.chain}: {chain.rows} row(s), {state}; newest hash {chain.head_hash}")
    for problem in report.problems:
        print(f"  {problem}")
    if report.ok:
        print("OK: nothing was changed, deleted or reordered behind DenseStudio's back.")
        return EXIT_OK
    print(f"TAMPERED: {len(report.problems)} problem(s) found in the project's records.")
    return EXIT_FAIL


# ------------------------------------------------------------------ golden set
def cmd_golden(args: argparse.Namespace) -> int:
    from densestudio.core import history, signoff

    with _open(args.project) as project:
        if args.action == "list":
            marks = signoff.golden_images(project)
            infos = {i.id: i for i in project.images_by_ids([m.image_id for m in marks])}
            print(f"{len(marks)} must-pass image(s)")
            for m in marks:
                path = infos[m.image_id].path if m.image_id in infos else "?"
                note = f"  ({m.note})" if m.note else ""
                print(f"  {m.image_id:>7} {path}  added by {m.added_by} "
                      f"{m.added_at:%Y-%m-%d}{note}")
            return EXIT_OK
        if not args.images:
            raise DenseStudioError(f"Name the images to {args.action} (id, path or file name).")
        ids = [history.find_image(project, ref).id for ref in args.images]
        if args.action == "add":
            n = signoff.add_golden(project, ids, note=args.note or "")
            print(f"Marked {n} image(s) as must-pass ({len(ids) - n} already were).")
        else:
            n = signoff.remove_golden(project, ids)
            print(f"Removed the must-pass mark of {n} image(s).")
    return EXIT_OK


# ------------------------------------------------------------------ approve / gate
def cmd_approve(args: argparse.Namespace) -> int:
    from densestudio.core import signoff

    with _open(args.project) as project:
        if args.list:
            rows = signoff.approvals(project)
            print(f"{len(rows)} approval(s)")
            for a in rows:
                print(f"  #{a.id} run {a.run_id} by {a.approved_by} {a.approved_at:%Y-%m-%d %H:%M}"
                      f" UTC, data {a.data_fingerprint or '-'}: {a.why}")
            return EXIT_OK
        if args.run is None:
            raise DenseStudioError("Which run? Pass --run N (see `densestudio approve P --list`).")
        a = signoff.approve_run(project, args.run, args.why or "", by=args.by)
    acc = a.metrics.get("test_acc")
    figures = f", test accuracy {acc * 100:.1f} %" if isinstance(acc, float) else ""
    print(f"Approved run {a.run_id} by {a.approved_by} at {a.approved_at:%Y-%m-%d %H:%M} UTC "
          f"(data {a.data_fingerprint or '-'}{figures}); record {a.id}, hash {a.hash[:16]}.")
    return EXIT_OK


def cmd_gate(args: argparse.Namespace) -> int:
    from densestudio.ml.gate import compare_runs_for_gate

    with _open(args.project) as project:
        result = compare_runs_for_gate(project, args.candidate, args.against,
                                       max_newly_wrong=args.max_newly_wrong)
    print(result.format(top=args.top))
    return EXIT_OK if result.passed else EXIT_FAIL


# ------------------------------------------------------------------ report
def cmd_report(args: argparse.Namespace) -> int:
    from densestudio.ml.report import ReportOptions, ReportProgress, write_report

    def on_event(e: object) -> None:
        if isinstance(e, ReportProgress):
            print(f"  {e.section}...", file=sys.stderr, flush=True)

    with _open(args.project) as project:
        run_id = args.run if args.run is not None else _latest_finished(project)
        options = ReportOptions(subset=args.subset, mistakes=args.mistakes,
                                heatmaps=not args.no_heatmaps, gate=not args.no_gate)
        written = write_report(project, Path(args.out), run_id, options, on_event=on_event)
    print(f"Wrote the validation report of run {written.run_id} ({written.subset} set, "
          f"{written.size_bytes / 1024:.0f} KiB) to {written.path}")
    return EXIT_OK


def add_signoff_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("history", help="label history of one image or of the whole project")
    p.add_argument("project")
    p.add_argument("image", nargs="?", help="image id, path or file name (default: all)")
    p.add_argument("--limit", type=COUNT, default=50, metavar="N",
                   help="whole log: show the newest N changes (default 50)")
    p.add_argument("--verify", action="store_true", help="also check the hash chains")
    p.set_defaults(func=cmd_history)

    p = sub.add_parser("verify", help="check that label history and approvals were not "
                                      "edited, deleted or reordered outside DenseStudio")
    p.add_argument("project")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("golden", help="must-pass images of the release gate: add, remove, list")
    p.add_argument("project")
    p.add_argument("action", choices=["add", "remove", "list"])
    p.add_argument("images", nargs="*", help="image ids, paths or file names")
    p.add_argument("--note", help="why these images must pass")
    p.set_defaults(func=cmd_golden)

    p = sub.add_parser("approve", help="approve a run for release (who, when, why, data, "
                                       "metrics; permanent)")
    p.add_argument("project")
    p.add_argument("--run", type=RUN_ID, help="the run to approve")
    p.add_argument("--why", help="the reason, kept with the approval")
    p.add_argument("--by", type=author,
                   help="who approves (default: $DENSESTUDIO_USER or the OS user)")
    p.add_argument("--list", action="store_true", help="list the approvals instead")
    p.set_defaults(func=cmd_approve)

    p = sub.add_parser("gate", help="release gate: a candidate run vs the approved one on the "
                                    "test split and the must-pass images (exit 1 = fail)")
    p.add_argument("project")
    p.add_argument("--candidate", type=RUN_ID, required=True, metavar="RUN")
    p.add_argument("--against", type=RUN_ID, metavar="RUN",
                   help="the run to compare with (default: the latest approved run)")
    p.add_argument("--max-newly-wrong", type=COUNT, metavar="N",
                   help="also fail when more than N images are newly wrong")
    p.add_argument("--top", type=COUNT, default=10, metavar="N", help="list N images per kind")
    p.set_defaults(func=cmd_gate)

    p = sub.add_parser("report", help="write a self-contained HTML validation report")
    p.add_argument("project")
    p.add_argument("out", help="the HTML file to write")
    p.add_argument("--run", type=RUN_ID, help="run id (default: the latest finished run)")
    p.add_argument("--subset", choices=["val", "test"], default="test",
                   help="the set the metrics are reported on (default: test)")
    p.add_argument("--mistakes", type=COUNT, default=8, metavar="N",
                   help="show the N most confident mistakes (default 8)")
    p.add_argument("--no-heatmaps", action="store_true", help="mistakes without heatmaps")
    p.add_argument("--no-gate", action="store_true",
                   help="leave out the comparison with the approved run")
    p.set_defaults(func=cmd_report)
