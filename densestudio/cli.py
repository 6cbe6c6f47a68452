"""Command line: drives core and ml without Qt.

Every user error becomes a one-line message on stderr and exit code 2 (1 for "finished but
some files were skipped"), never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from densestudio import __version__
from densestudio.cli_signoff import add_signoff_commands
from densestudio.cli_types import (
    COST,
    COUNT,
    LEARNING_RATE,
    MINUTES,
    PROBABILITY,
    RATE,
    RUN_ID,
    SEED,
    SIZE,
    author,
    number,
)
from densestudio.core import formatting
from densestudio.core.errors import CancelledError, DenseStudioError
from densestudio.core.progress import CancelToken

if TYPE_CHECKING:  # imported lazily at run time: `densestudio --help` stays fast
    import numpy as np

    from densestudio.core.store import Project
    from densestudio.ml.config import TrainConfig
    from densestudio.runtime.operating_point import OperatingPoint

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE = 0, 1, 2


class ProgressLine:
    """A single self-overwriting terminal line, updated at most ~10 times a second."""

    def __init__(self, stream: TextIO | None = None) -> None:
        stream = stream or sys.stderr
        self.stream: TextIO = getattr(stream, "unescaped", stream)  # writes its own \r, ESC
        self._last = 0.0
        self._tty = stream.isatty()

    def update(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < 0.1:
            return
        self._last = now
        if self._tty:
            self.stream.write("\r\x1b[2K" + text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def done(self) -> None:
        if self._tty:
            self.stream.write("\n")
            self.stream.flush()


def bar(fraction: float, width: int = 30) -> str:
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def format_eta(seconds: float | None) -> str:
    return formatting.eta(seconds, unknown="--:--")  # plain ASCII for any terminal


@contextlib.contextmanager
def ctrl_c_cancels(cancel: CancelToken) -> Iterator[None]:
    """The first Ctrl-C (or SIGTERM: `kill`, a service manager, a batch system's time limit)
    asks a long job to stop cleanly via ``cancel`` - a training run is then saved as stopped
    and resumable instead of staying "running" -; a second one aborts at once."""
    import signal

    def on_signal(_sig: int, _frame: object) -> None:
        if cancel.cancelled:
            raise KeyboardInterrupt
        cancel.cancel()
        print("\nStopping (press Ctrl-C again to abort at once)...", file=sys.stderr)

    stops = [signal.SIGINT] + ([signal.SIGTERM] if hasattr(signal, "SIGTERM") else [])
    previous = {sig: signal.signal(sig, on_signal) for sig in stops}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# ============================================================== core commands
def cmd_new(args: argparse.Namespace) -> int:
    from densestudio.core.store import Project

    with Project.create(args.project, files_root=args.files_root) as project:
        print(f"Created project {project.location}")
        if project.shared:
            print(f"  files root (runs, checkpoints): {project.files_root}"
                  + ("" if args.files_root else " - on this machine only; give the team a "
                     "shared folder with `densestudio files-root PROJECT DIR`"))
    return EXIT_OK


def cmd_open(args: argparse.Namespace) -> int:
    """The desktop app with this project (a file or a postgresql:// URL) open."""
    from densestudio.core.db import project_target

    project_target(args.project)  # a bad argument is a one-line error here, not in the GUI
    from densestudio.ui.app import run_app

    return run_app(["densestudio", "--project", args.project])


def open_project(path: str) -> Project:
    """Open a project for a command; says so when it is read-only, and lets a write that
    waits for another process's lock say that it is waiting."""
    from densestudio.core.store import Project

    project = Project.open(path)
    if project.read_only:
        print(f"note: opened read-only: {project.read_only}; changes cannot be saved.",
              file=sys.stderr)
    project.on_lock_wait(lambda message: print(message, file=sys.stderr, flush=True))
    return project


def printable(text: str) -> str:
    """One line of text for a table or a message: control characters (a newline in an old
    class name, undecodable file-name bytes) are shown escaped, never printed raw."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def cmd_import(args: argparse.Namespace) -> int:
    from densestudio.core.importer import ImportOptions, ImportProgress, run_import

    line = ProgressLine()

    def on_event(event: object) -> None:
        if isinstance(event, ImportProgress) and event.phase == "scanning":
            line.update(f"scanning... {event.total} image files found")
        elif isinstance(event, ImportProgress):
            frac = event.done / event.total if event.total else 0.0
            line.update(
                f"{bar(frac)} {event.done}/{event.total} files  "
                f"{event.rate:.0f}/s  ETA {format_eta(event.eta_s)}",
                force=event.done == event.total,
            )

    options = ImportOptions(labels_from_subfolders=args.labels_from_subfolders)
    with open_project(args.project) as project:
        report = run_import(project, [Path(p) for p in args.paths], options, on_event=on_event)
    line.done()
    print(report.summary())
    for note in report.notes:
        print(f"  note: {note}")
    for skipped in report.skipped[: args.show_skipped]:
        print(f"  skipped {skipped.path}: {skipped.reason}")
    if len(report.skipped) > args.show_skipped:
        print(f"  ... and {len(report.skipped) - args.show_skipped} more skipped files")
    return EXIT_PARTIAL if report.skipped else EXIT_OK


def cmd_info(args: argparse.Namespace) -> int:
    from densestudio.core.constants import SPLITS
    from densestudio.core.file_changes import check_files, marked_for_review
    from densestudio.core.store import ImageFilter, split_settings

    with open_project(args.project) as project:
        review: list[str] = []
        if args.check_files:
            project.refresh_missing()
            check_files(project)
            review = marked_for_review(project)
        classes = project.classes()
        counts = project.counts()
        settings = split_settings(project)
        missing = project.count_images(ImageFilter(missing=True))
        print(f"Project {project.location}")
        if project.shared:
            print(f"  files root: {project.files_root}")
        print(f"  images: {counts.total}   labeled: {counts.total - counts.count(None)}"
              f"   unlabeled: {counts.count(None)}   missing files: {missing}")
        ratios = "/".join(f"{r * 100:g}" for r in settings.ratios)
        locked = " (test set locked)" if settings.test_locked else ""
        print(f"  split {ratios}, seed {settings.seed}{locked}")
        from densestudio.ml.operating_point import project_good_class

        print(f"  good class: {printable(project_good_class(project).describe())}")
        header = f"  {'key':>3}  {'class':<24} {'total':>7} " + " ".join(
            f"{s:>7}" for s in SPLITS
        )
        print(header)
        rows = [(c.shortcut or "", c.name, c.id) for c in classes] + [("", "(unlabeled)", None)]
        for key, name, class_id in rows:
            cells = " ".join(f"{counts.count(class_id, s):>7}" for s in SPLITS)
            name = printable(name)
            print(f"  {key:>3}  {name[:24]:<24} {counts.count(class_id):>7} {cells}")
        authors = _author_totals(project)
        if len(authors) > 1 or (project.shared and authors):
            print("  labeled by: " + ", ".join(f"{printable(who or '(unknown)')} {n}"
                                               for who, n in authors))
        if missing:
            print(f"\n{missing} image file(s) are missing; use `densestudio relink` to find them:")
            for img in project.missing_images()[:10]:
                print(f"  {img.path}")
        if review:
            print(f"\n{len(review)} labeled image file(s) changed since they were labeled; "
                  "their labels are marked for review and they are left out of training until "
                  "labeled again:")
            for path in review[:10]:
                print(f"  {printable(path)}")
    return EXIT_OK


def _author_totals(project: Project) -> list[tuple[str, int]]:
    totals: dict[str, int] = {}
    for per_author in project.counts_by_author().values():
        for who, n in per_author.items():
            totals[who] = totals.get(who, 0) + n
    return sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))


def cmd_import_labels(args: argparse.Namespace) -> int:
    from densestudio.core.exchange import import_labels_csv

    with open_project(args.project) as project:
        report = import_labels_csv(project, Path(args.csv), create_classes=args.create_classes,
                                   author=args.author)
    print(report.summary())
    if report.created_classes:
        print("  created classes: " + ", ".join(printable(n) for n in report.created_classes))
    for name, n in sorted(report.unknown_classes.items()):
        print(f"  unknown class '{printable(name)}': {n} row(s) skipped"
              " (--create-classes creates it)")
    for line, key in report.unknown_images[: args.show_skipped]:
        print(f"  line {line}: no image with path or hash '{printable(key)}'")
    for line, why in report.bad_rows[: args.show_skipped]:
        print(f"  line {line}: {printable(why)}")
    hidden = (max(len(report.unknown_images) - args.show_skipped, 0)
              + max(len(report.bad_rows) - args.show_skipped, 0))
    if hidden:
        print(f"  ... and {hidden} more skipped row(s)")
    if report.repeated:
        print(f"  {report.repeated} image(s) were named by more than one row; the last counts")
    return EXIT_PARTIAL if report.skipped else EXIT_OK


def cmd_files_root(args: argparse.Namespace) -> int:
    with open_project(args.project) as project:
        if args.folder is not None:
            project.set_files_root(args.folder)
            print(f"Files root of {project.location} set to {project.files_root}")
        else:
            print(project.files_root)
    return EXIT_OK


def cmd_map_root(args: argparse.Namespace) -> int:
    """Show or change this machine's root mapping (stored root -> local root)."""
    from densestudio.core import machine

    mapping = dict(machine.load_root_map().pairs)
    if args.stored is not None:
        if args.remove:
            if mapping.pop(args.stored, None) is None:
                raise DenseStudioError(f"'{args.stored}' is not mapped on this machine.")
        elif args.local is None:
            raise DenseStudioError("Give the local folder too: map-root STORED LOCAL "
                                   "(or --remove).")
        else:
            mapping[args.stored] = os.path.abspath(Path(args.local).expanduser())
        path = machine.save_root_map(mapping)
        print(f"Saved {path}")
    for stored, local in sorted(mapping.items()):
        print(f"  {stored} -> {local}")
    if not mapping:
        print("No roots are mapped on this machine.")
    return EXIT_OK


def cmd_export_labels(args: argparse.Namespace) -> int:
    from densestudio.core.exchange import export_labels_csv

    with open_project(args.project) as project:
        n = export_labels_csv(project, Path(args.out))
    print(f"Wrote {n} rows to {args.out}")
    return EXIT_OK


def cmd_backup(args: argparse.Namespace) -> int:
    with open_project(args.project) as project:
        out = project.backup(args.out)
    print(f"Backed up {project.location} to {out}")
    return EXIT_OK


def cmd_relink(args: argparse.Namespace) -> int:
    from densestudio.core.importer import relink

    with open_project(args.project) as project:
        result = relink(project, [Path(p) for p in args.folders])
    print(f"Relinked {result.relinked} image(s); {result.still_missing} still missing.")
    return EXIT_OK if result.still_missing == 0 else EXIT_PARTIAL


def split_ratios(text: str) -> tuple[float, float, float]:
    """argparse type of --ratios: three finite fractions >= 0 that sum to 1."""
    from densestudio.core.errors import ProjectError
    from densestudio.core.splits import check_ratios

    try:
        return check_ratios([float(x) for x in text.split(",")])
    except (ValueError, ProjectError):
        raise argparse.ArgumentTypeError(
            f"'{text}' is not three fractions for train,val,test that are >= 0 and sum to 1 "
            "(e.g. 0.7,0.15,0.15)") from None


def cmd_split(args: argparse.Namespace) -> int:
    from densestudio.core import splits
    from densestudio.core.near_duplicates import resplit
    from densestudio.core.store import lock_test_split

    with open_project(args.project) as project:
        if args.lock is not None:
            lock_test_split(project, args.lock == "on")
        if args.group_by is not None:
            with project.transaction() as s:
                splits.set_group_by(s, "" if args.group_by == "none" else args.group_by)
        if args.resplit:
            n = resplit(project, args.ratios, args.seed)
            print(f"Re-assigned splits of {n} image(s).")
        elif args.ratios is not None:
            with project.transaction() as s:
                splits.set_ratios(s, args.ratios)
        if (args.group_by is not None or args.ratios is not None) and not args.resplit:
            print("Saved; it applies to new images. Use --resplit to apply it to all.")
    return cmd_info(argparse.Namespace(project=args.project, check_files=False))


def cmd_duplicates(args: argparse.Namespace) -> int:
    from densestudio.core.near_duplicates import find_cross_split_duplicates, move_together

    with open_project(args.project) as project:
        groups = find_cross_split_duplicates(project, args.max_distance)
        names = {r.id: r.path for r in project.images_by_ids(
            [i for g in groups for i in g.image_ids])}
        print(f"{len(groups)} group(s) of near-identical images span more than one split"
              f" ({sum(g.crosses_test for g in groups)} touch the test set).")
        for group in groups[:20]:
            print("  " + ", ".join(f"{names[i]} [{sp}]"
                                   for i, sp in zip(group.image_ids, group.splits, strict=False)))
        if args.move and groups:
            print(f"Moved {move_together(project, groups)} image(s) so each group shares a split.")
    return EXIT_OK


def add_core_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("new", help="create an empty project file, or a shared project in "
                                   "an empty PostgreSQL database")
    p.add_argument("project", help="path of the new project (.dsproj added if missing), or "
                                   "postgresql://USER@HOST/DATABASE")
    p.add_argument("--files-root", metavar="DIR",
                   help="shared project: the shared folder for its runs and checkpoints")
    p.set_defaults(func=cmd_new)

    p = sub.add_parser("open", help="open a project (file or postgresql:// URL) in the app")
    p.add_argument("project")
    p.set_defaults(func=cmd_open)

    p = sub.add_parser("import-labels", help="label images from a CSV file (columns: path "
                                             "or content_hash, class, optional author)")
    p.add_argument("project")
    p.add_argument("csv", help="UTF-8 (or UTF-16 with a byte-order mark) CSV file; relative "
                               "paths in it are resolved against the CSV file's folder, not "
                               "the working directory")
    p.add_argument("--create-classes", action="store_true",
                   help="create classes the project does not have (else their rows are "
                        "skipped and listed)")
    p.add_argument("--author", type=author,
                   help="who decided the labels of rows without an author column (default: "
                        "this user)")
    p.add_argument("--show-skipped", type=COUNT, default=20, metavar="N",
                   help="list at most N skipped rows of each kind (default 20)")
    p.set_defaults(func=cmd_import_labels)

    p = sub.add_parser("files-root", help="show or set a shared project's folder for runs "
                                          "and checkpoints")
    p.add_argument("project")
    p.add_argument("folder", nargs="?", help="a folder every machine can read")
    p.set_defaults(func=cmd_files_root)

    p = sub.add_parser("map-root", help="this machine's mapping of a folder as stored in "
                                        "shared projects to where it is mounted here")
    p.add_argument("stored", nargs="?", help="the folder as the project stores it")
    p.add_argument("local", nargs="?", help="where it is on this machine")
    p.add_argument("--remove", action="store_true", help="remove the mapping of STORED")
    p.set_defaults(func=cmd_map_root)

    p = sub.add_parser("import", help="import image folders or files into a project")
    p.add_argument("project")
    p.add_argument("paths", nargs="+", help="folders (searched recursively) or image files")
    p.add_argument("--labels-from-subfolders", action="store_true",
                   help="label each image with the name of the sub-folder it is in")
    p.add_argument("--show-skipped", type=COUNT, default=20, metavar="N",
                   help="list at most N skipped files (default 20)")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("info", help="classes, counts per class and split, missing files")
    p.add_argument("project")
    p.add_argument("--check-files", action="store_true",
                   help="check first that every image file still exists and holds what was "
                        "imported (changed files: labels marked for review)")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("export-labels", help="write path,hash,label,split rows to a CSV file")
    p.add_argument("project")
    p.add_argument("out")
    p.set_defaults(func=cmd_export_labels)

    p = sub.add_parser("backup", help="write a consistent copy of the project file (safe "
                                      "while it is open; includes changes not yet in the "
                                      ".dsproj itself)")
    p.add_argument("project")
    p.add_argument("out", help="the copy's file name, or a folder to put it in")
    p.set_defaults(func=cmd_backup)

    p = sub.add_parser("relink", help="find moved images by content in new folders")
    p.add_argument("project")
    p.add_argument("folders", nargs="+")
    p.set_defaults(func=cmd_relink)

    p = sub.add_parser("split", help="show, re-assign or lock the train/val/test split")
    p.add_argument("project")
    p.add_argument("--resplit", action="store_true", help="re-assign all non-locked images")
    p.add_argument("--ratios", type=split_ratios,
                   help="train,val,test fractions, e.g. 0.7,0.15,0.15")
    p.add_argument("--seed", type=SEED)
    p.add_argument("--lock", choices=["on", "off"], help="lock or unlock the test set")
    p.add_argument("--group-by", metavar="KEY",
                   help="keep groups in one split: 'folder', 'regex:PATTERN' (first group of "
                        "the pattern on the file name, e.g. 'regex:(lot\\d+)'), or 'none'")
    p.set_defaults(func=cmd_split)

    p = sub.add_parser("duplicates", help="near-identical images that sit in different splits")
    p.add_argument("project")
    p.add_argument("--max-distance", type=number(int, at_least=0, at_most=3), default=3,
                   help="dHash bits that may differ (0-3)")
    p.add_argument("--move", action="store_true", help="move each group into one split")
    p.set_defaults(func=cmd_duplicates)


# ============================================================== ml commands
# (train / evaluate / export / predict are registered by add_ml_commands below)
def _pick_run(project: Project, run_id: int | None) -> int:
    from densestudio.core import runs

    if run_id is not None:
        return runs.get_run(project, run_id).id
    latest = runs.latest_run(project, "finished")
    if latest is None:
        raise DenseStudioError("This project has no finished training run; train one first.")
    return latest.id


def _train_config(args: argparse.Namespace, project: Project) -> TrainConfig:
    """The recommended settings for this data and device (printed with their reasons),
    with the options given on the command line on top."""
    from densestudio.core.profile import data_profile
    from densestudio.ml import backbone
    from densestudio.ml.config import BACKBONE_ARCH
    from densestudio.ml.recommend import recommend
    from densestudio.ml.runtime import resolve_device

    device = resolve_device(args.device)
    wants_weights = bool(args.pretrained or args.weights)
    budget = 60.0 * args.minutes if args.minutes else None
    problem = None if wants_weights or args.scratch else backbone.check()
    if problem is not None:
        print(f"{problem} Training from scratch (random weights) instead.", file=sys.stderr)
    speed = None
    if args.img_size is None and args.arch is None and (budget or args.epochs is None):
        # the budget buys the input size this computer's measured speed allows
        from densestudio.ml.budget import calibrated_train_speed

        print("Measuring this computer's training speed (a few seconds)…", flush=True)
        speed = calibrated_train_speed
    rec = recommend(data_profile(project), device.type, weights_available=wants_weights,
                    backbone_available=not (wants_weights or args.scratch) and problem is None,
                    speed=speed, **({"budget_s": budget} if budget else {}))
    print("Settings chosen for this data:")
    for reason in rec.reasons:
        print(f"  - {reason}")
    cfg = rec.config
    changes: dict[str, object] = {"device": args.device}
    for name in ("arch", "img_size", "epochs", "batch_size", "lr", "augment", "balance",
                 "seed", "unfreeze_epoch", "name", "monitor"):
        value = getattr(args, name)
        if value is not None:
            changes[name] = value
    if args.epochs is not None and not args.minutes:
        changes["time_budget_s"] = None  # a fixed number of epochs instead of a budget
    elif budget:
        changes["time_budget_s"] = budget  # the user's budget, also over a fast first model
    if args.max_minutes:
        changes["time_cap_s"] = 60.0 * args.max_minutes
    if args.stretch:
        changes["fit"] = "stretch"
    if args.weights:  # stored with the run: absolute, not relative to this directory
        changes["weights_path"] = str(Path(args.weights).expanduser().absolute())
        changes["pretrained"] = True
    if args.freeze is not None:
        changes["strategy"] = args.freeze
    if args.patience is not None:
        changes["early_stopping_patience"] = args.patience or None
    for flag, field in (("no_tta", "tta"), ("no_ema", "ema"), ("no_amp", "amp")):
        if getattr(args, flag):
            changes[field] = False
    if args.memory_efficient:
        changes["memory_efficient"] = True
    if args.tta:
        changes["tta"] = True
    if args.good is not None:  # project data: later runs, the GUI and evaluate see it too
        from densestudio.ml import operating_point as op

        op.set_project_good_class(project, args.good)
    if args.max_miss_rate is not None:
        changes["max_miss_rate"] = args.max_miss_rate
    cfg = cfg.with_(**changes)
    if cfg.backbone and (cfg.arch != BACKBONE_ARCH or cfg.uses_pretrained):
        cfg = cfg.with_(backbone=False, **({} if cfg.uses_pretrained else {"strategy": "full"}))
    _print_good_class(project, cfg.max_miss_rate)
    return cfg if args.unfreeze_epoch is not None else cfg.unfreeze_within_epochs()


def _print_good_class(project: Project, max_miss_rate: float) -> None:
    from densestudio.ml import operating_point as op

    good = op.project_good_class(project)
    if good.name is None:
        print(f"Good class: {good.describe()}; the model decides by the most likely class "
              f"(set one with `densestudio good-class PROJECT NAME` or --good NAME).")
    else:
        print(f"Good class: {good.describe()}; the run ends with an OK/NG operating point "
              f"for at most {max_miss_rate * 100:g} % of defects passed as good "
              f"(--max-miss-rate).")


def cmd_train(args: argparse.Namespace) -> int:
    from densestudio.ml import summary
    from densestudio.ml.events import (
        BatchProgress,
        EpochEnded,
        EpochsPlanned,
        EvaluationProgress,
        ImagesChanged,
        ImagesSkipped,
        PreparingData,
        RunCancelled,
        RunFinished,
        RunStarted,
        StartingPointChosen,
        WeightsDownload,
    )  # fmt: skip
    from densestudio.ml.train import fit

    line = ProgressLine()
    cancel = CancelToken()
    state = {"epochs": 0}

    def on_event(e: object) -> None:
        if isinstance(e, WeightsDownload):
            frac = e.done / e.total if e.total else 0.0
            line.update(f"downloading {e.filename} {bar(frac)} {e.done / 1e6:.1f} MB")
        elif isinstance(e, PreparingData):
            line.update(f"preparing images {bar(e.done / max(e.total, 1))} {e.done}/{e.total}"
                        f" ({e.from_disk_cache} from cache)", force=e.done == e.total)
        elif isinstance(e, ImagesSkipped):
            line.done()
            print(f"warning: {e.count} image(s) could not be read and are left out of this "
                  f"run: {'; '.join(e.examples)}", file=sys.stderr)
        elif isinstance(e, ImagesChanged):
            print(f"warning: {e.count} labeled image file(s) changed since they were labeled; "
                  "their labels are marked for review and this run leaves them out: "
                  f"{'; '.join(printable(p) for p in e.examples)}", file=sys.stderr)
        elif isinstance(e, EpochsPlanned):
            line.done()
            state["epochs"] = e.epochs
            budget = (f" to fit about {format_eta(e.budget_s)}"
                      if e.budget_s and not e.over_budget else "")
            print(f"planned {e.epochs} epochs{budget} ({e.reason})", flush=True)
        elif isinstance(e, StartingPointChosen):
            line.done()
            print(e.text, flush=True)
        elif isinstance(e, RunStarted):
            line.done()
            state["epochs"] = e.total_epochs
            resumed = f", resuming after epoch {e.start_epoch}" if e.start_epoch else ""
            print(f"Run {e.run_id}: {e.n_train} training / {e.n_val} validation images on "
                  f"{e.device}, {e.total_epochs} epochs x {e.steps_per_epoch} steps{resumed}")
        elif isinstance(e, BatchProgress):
            line.update(f"epoch {e.epoch}/{state['epochs']} {bar(e.step / e.steps)} "
                        f"{e.step}/{e.steps} loss {e.loss:.3f} {e.images_per_s:.0f} img/s "
                        f"ETA {format_eta(e.eta_s)}")
        elif isinstance(e, EpochEnded):
            line.done() if line._tty else None
            star = " *" if e.improved else ""
            balanced = ("" if e.val_balanced_acc is None
                        else f"val balanced acc {e.val_balanced_acc * 100:5.1f} %  ")
            print(f"epoch {e.epoch:>3}/{state['epochs']}  train loss {e.train_loss:.4f}  "
                  f"val loss {e.val_loss:.4f}  {balanced}val acc "
                  f"{formatting.percent(e.val_acc):>7}  "
                  f"macro-F1 {formatting.percent(e.val_macro_f1):>7}  lr {e.lr:.2e}  "
                  f"{e.images_per_s:.0f} img/s  {e.seconds:.0f} s{star}", flush=True)
        elif isinstance(e, EvaluationProgress):
            line.update(f"evaluating {e.subset} {bar(e.done / max(e.total, 1))}",
                        force=e.done == e.total)
        elif isinstance(e, RunFinished):
            line.done()
            m = e.metrics
            early = " (stopped early)" if e.stopped_early else ""
            print(f"Finished run {e.run_id}{early}; best epoch {e.best_epoch}.")
            decided = decision_lines(project, e.run_id, "test")  # OK/NG first
            for text in decided:
                print(f"  {text}")
            if decided:
                print("  By the most likely class (argmax):")
            for subset in ("test", "val"):  # balanced accuracy and the worst class first
                if f"{subset}_acc" in m:
                    print(f"  {summary.long_text(summary.summarize(m, subset=subset))}, "
                          f"macro-F1 {formatting.percent(m.get(f'{subset}_macro_f1'))}")
        elif isinstance(e, RunCancelled):
            line.done()
            print(f"Run {e.run_id} stopped after epoch {e.epoch}; continue it with "
                  f"`densestudio train {args.project} --resume {e.run_id}`.")

    from densestudio.ml import distributed
    from densestudio.ml.operating_point import decision_lines

    with distributed.joined() as world, open_project(args.project) as project, \
            ctrl_c_cancels(cancel):
        if not world.is_main:  # a torchrun process: trains the run rank 0 starts or resumes
            fit(project, None, lambda _e: None, cancel)
            return EXIT_OK
        if world.size > 1:
            print(f"Training in {world.size} processes (torchrun); this is rank 0, which "
                  "writes the run's checkpoints and metrics.")
        try:
            if args.resume is not None:
                fit(project, None, on_event, cancel, resume_run_id=args.resume)
            else:
                cfg = _train_config(args, project)
                fit(project, cfg, on_event, cancel, allow_download=not args.offline)
        finally:
            line.done()
    return 130 if cancel.cancelled else EXIT_OK


def cmd_pretrain(args: argparse.Namespace) -> int:
    from densestudio.ml import pretrain

    return pretrain.main_args(args)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from densestudio.core import runs
    from densestudio.ml.eval_report import report
    from densestudio.ml.evaluate import evaluate_run
    from densestudio.ml.operating_point import decision_lines, load_operating_point

    subsets = ("val", "test") if args.subset == "both" else (args.subset,)
    with open_project(args.project) as project:
        run_id = _pick_run(project, args.run)
        if args.recompute or args.tta or any(
            runs.prediction_count(project, run_id, s) == 0 for s in subsets
        ):
            evaluate_run(project, run_id, subsets, tta=args.tta)
        point = load_operating_point(project, run_id)
        for subset in subsets:
            for line in decision_lines(project, run_id, subset):  # OK/NG decisions lead
                print(line)
            print(report(project, run_id, subset).format(top=args.top, point=point))
            print()
    return EXIT_OK


def cmd_good_class(args: argparse.Namespace) -> int:
    """Show, set or clear the project's good class (the class that means a good part)."""
    from densestudio.ml import operating_point as op

    if args.name is not None and (args.clear or args.auto):
        raise DenseStudioError("Give a class NAME, or --clear, or --auto; not both.")
    with open_project(args.project) as project:
        if args.clear:
            good = op.set_project_good_class(project, None)
        elif args.auto:
            good = op.set_project_good_class(project, None, auto=True)
        elif args.name is not None:
            good = op.set_project_good_class(project, args.name)
        else:
            good = op.project_good_class(project)
        print(f"Good class: {good.describe()}.")
    return EXIT_OK


def _pick_export_run(project: Project, args: argparse.Namespace) -> int:
    """The run to export: --run, else the approved run, else the latest finished one; warns
    on stderr when it is not approved (see `densestudio approve`)."""
    from densestudio.core import signoff

    run_id = args.run if args.run is not None else signoff.approved_run_id(project)
    run_id = _pick_run(project, run_id)
    if not signoff.is_approved(project, run_id):
        print(f"warning: run {run_id} is not approved for release (approve it with "
              f"`densestudio approve {args.project} --run {run_id} --why ...`).",
              file=sys.stderr)
    return run_id


def _record_export(project: Project, run_id: int, out: Path, files: Sequence[Path]) -> None:
    """Remember the export in the run, for the validation report (its parity figures)."""
    from densestudio.ml.report import record_export

    record_export(project, run_id, out, files)


def cmd_export(args: argparse.Namespace) -> int:
    from densestudio.ml.export import ExportProgress, OodCalibrated, ParityChecked, export_model

    def on_event(e: object) -> None:
        if isinstance(e, ExportProgress):
            print(f"  {e.stage}...", file=sys.stderr, flush=True)
        elif isinstance(e, OodCalibrated):
            print(f"Unknown-input check: UNSURE when ood_score > {e.threshold:.4f} "
                  f"({e.flagged * 100:.1f} % of {e.n} validation images)")
        elif isinstance(e, ParityChecked):
            print(("Parity: " if e.passed else "Parity FAILED: ") + e.describe())

    cancel = CancelToken()
    with open_project(args.project) as project, ctrl_c_cancels(cancel):
        run_id = _pick_export_run(project, args)
        out = Path(args.out)
        if out.is_dir():  # a folder: the model goes inside it, named after project and run
            out = out / f"{project.name}-run{run_id}"
        out = export_model(project, run_id, out, args.format, on_event=on_event, cancel=cancel)
        _record_export(project, run_id, out, [out])
    print(f"Exported run {run_id} to {out}")
    return EXIT_OK


def _load_model_file(path: str):  # noqa: ANN202 - runtime.model_file.ModelFile
    """ONNX files run in ONNX Runtime without torch; only TorchScript files import it."""
    from densestudio.runtime.model_file import sniff_format

    if sniff_format(path) == "onnx":
        from densestudio.runtime.onnx_model import load_onnx

        return load_onnx(path)
    from densestudio.ml.export import load_exported

    return load_exported(path)


def cmd_predict(args: argparse.Namespace) -> int:
    import csv

    from densestudio.core.files import Guarded, check_output, refuse_overwriting
    from densestudio.core.imaging import is_image_path, other_types_note

    model = _load_model_file(args.model)  # a missing or foreign model file is the first error
    paths: list[Path] = []
    others: dict[str, int] = {}
    for raw in args.inputs:
        p = Path(raw)
        if p.is_dir():
            for q in sorted(q for q in p.rglob("*") if q.is_file()):
                if is_image_path(q):
                    paths.append(q)
                elif not q.name.startswith("."):
                    others[q.suffix.lower()] = others.get(q.suffix.lower(), 0) + 1
        elif p.exists():
            paths.append(p)
        else:
            raise DenseStudioError(f"Not found: {p}")
    if args.csv:  # refused now, not after predicting: a folder, the model, an input image
        check_output(Path(args.csv))
        refuse_overwriting(Path(args.csv), [Guarded(Path(args.model), "the model file read"),
                                            *(Guarded(p, "an image to predict") for p in paths)])
    note = other_types_note(others)
    if note:
        print(f"note: {note}", file=sys.stderr)
    if not paths:
        raise DenseStudioError("No image files to predict.")
    results = []
    line = ProgressLine()
    for start in range(0, len(paths), 64):
        results.extend(model.predict(paths[start : start + 64]))
        line.update(f"predicting {bar(len(results) / len(paths))} {len(results)}/{len(paths)}",
                    force=len(results) == len(paths))
    line.done()
    names = model.class_names
    point = model.operating_point  # OK/NG decisions when the model carries one
    if point is not None:
        band = (f", UNSURE if {point.unsure_low:.3f} <= P < {point.unsure_high:.3f}"
                if point.unsure_low is not None else "")
        print(f"Operating point: OK if P({point.good_class}) >= {point.threshold:.3f}, "
              f"else NG{band}", file=sys.stderr)
    ood = model.spec.ood_threshold  # files with the unknown-input check
    if ood is not None:
        print(f"Unknown-input check: UNSURE when ood_score > {ood:.4f} (unlike the training "
              f"images); {sum(r.unfamiliar for r in results)} of {len(results)} flagged",
              file=sys.stderr)
    frames = model.spec.frame_checks is not None  # files with frame checks
    if frames:
        bad = [r.reason for r in results if r.reason and r.reason != "unlike the training images"]
        print(f"Frame checks (too dark, overexposed, out of focus, flat, ...): {len(bad)} of "
              f"{len(results)} frames unfit to judge", file=sys.stderr)
    checked = ood is not None or frames
    decided = point is not None or checked
    good = model.spec.good_index if point is not None else None
    if args.csv:
        from densestudio.core.csv_cells import csv_output, csv_text

        with csv_output(Path(args.csv)) as f:
            w = csv.writer(f)
            w.writerow(["path", "class", "confidence", *[csv_text(f"p_{n}") for n in names],
                        "error", *(["decision"] if decided else []),
                        *(["ood_score"] if ood is not None else []),
                        *(["unfamiliar", "reason"] if checked else [])])
            for r in results:
                w.writerow([csv_text(r.path or ""), csv_text(r.class_name or ""),
                            f"{r.confidence:.6f}", *[f"{v:.6f}" for v in r.probs],
                            csv_text(r.error or ""),
                            *([r.decision or ""] if decided else []),
                            *([f"{r.ood_score:.6f}" if r.ood_score is not None else ""]
                              if ood is not None else []),
                            *([int(r.unfamiliar), r.reason or ""] if checked else [])])
        print(f"Wrote {len(results)} rows to {args.csv}")
    else:
        for r in results:
            if r.error:
                print(f"{r.path}\tERROR\t{r.error}")
            elif point is not None and good is not None:  # P(good) beside the decision
                why = f"\t{r.reason}" if r.reason else ""
                print(f"{r.path}\t{r.decision or '-'}\tP({point.good_class})="
                      f"{float(r.probs[good]):.4f}\ttop class {r.class_name} "
                      f"{r.confidence:.4f}{why}")
            elif decided:  # "-": no operating point and nothing unusual
                why = f"\t{r.reason}" if r.reason else ""
                print(f"{r.path}\t{r.class_name}\t{r.confidence:.4f}\t{r.decision or '-'}{why}")
            else:
                print(f"{r.path}\t{r.class_name}\t{r.confidence:.4f}")
    return EXIT_PARTIAL if any(r.error for r in results) else EXIT_OK


def cmd_operating_point(args: argparse.Namespace) -> int:
    """Show, suggest, set or clear a run's OK/NG operating point (the GUI's "OK/NG" dialog)."""
    from densestudio.core import runs
    from densestudio.ml import operating_point as op
    from densestudio.runtime.operating_point import OperatingPoint, OperatingPointError

    with open_project(args.project) as project:
        run_id = _pick_run(project, args.run)
        names = runs.run_class_names(project, run_id)
        if args.clear:
            op.save_operating_point(project, run_id, None)
            print(f"Run {run_id}: operating point removed.")
            return EXIT_OK
        stored = op.load_operating_point(project, run_id)
        good = args.good or (stored.good_class if stored
                             else op.project_good_class(project).name)
        if good is None:
            raise DenseStudioError(
                f"Which class is the good one? No class name says so; pass --good CLASS "
                f"({', '.join(names)}).")
        if not args.good and not stored:
            print(f"Good class: '{good}' (the project's; --good CLASS picks another).")
        if good not in names:
            raise DenseStudioError(f"'{good}' is not a class of run {run_id} "
                                   f"({', '.join(names)}).")
        probs, true = op.stored_predictions(project, run_id, args.subset)
        if len(true) == 0:
            raise DenseStudioError(
                f"Run {run_id} has no stored {args.subset} predictions; run "
                f"'densestudio evaluate {args.project} --run {run_id} --subset {args.subset}'.")
        p_good, is_good = op.good_scores(probs, true, names.index(good))
        curve = op.tradeoff_curve(p_good, is_good, steps=1001)
        suggested = op.best_threshold(curve, args.cost_miss, args.cost_false_reject)
        print(f"Run {run_id}, {args.subset} predictions: {len(true)} images, "
              f"{int(is_good.sum())} good ('{good}'), {int((~is_good).sum())} defective")
        print(f"Costs miss : false reject = {args.cost_miss:g} : {args.cost_false_reject:g}; "
              f"suggested threshold {suggested:.3f}")
        choice = None
        chosen: float | None = None  # choice.threshold, when there is a choice
        if args.max_miss_rate is not None:
            choice = op.threshold_for_max_miss(p_good, is_good, args.max_miss_rate)
            if choice.threshold is None:
                raise DenseStudioError(choice.message)
            chosen = choice.threshold
        print("threshold   miss rate (95 % CI)        false-reject rate (95 % CI)")
        marks = {round(suggested, 3): "  <- suggested"}
        if chosen is not None:
            marks[round(chosen, 4)] = (
                f"  <- miss rate <= {args.max_miss_rate * 100:g} % (upper bound)")
        for t in sorted({0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, *marks}):
            r = op.rates_with_intervals(p_good, is_good, t)
            print(f"  {t:7.4g}   {r.miss.estimate * 100:6.2f} % ({r.miss.range_text(2):>11})   "
                  f"{r.false_reject.estimate * 100:6.2f} % ({r.false_reject.range_text(2):>11})"
                  f"{marks.get(t, '')}")
        _print_miss_claim(p_good, is_good, chosen if chosen is not None else suggested,
                          args.max_miss_rate or 0.01)
        if choice is not None:
            print(choice.message)
        threshold = (suggested if args.suggest
                     else chosen if chosen is not None else args.threshold)
        if threshold is None:
            print(f"Stored operating point: {_describe_point(stored)}")
            return EXIT_OK
        low, high = args.unsure if args.unsure else (None, None)
        point = OperatingPoint(good, float(threshold), low, high, args.cost_miss,
                                  args.cost_false_reject)  # fmt: skip
        try:
            op.save_operating_point(project, run_id, point)
        except OperatingPointError as exc:
            raise DenseStudioError(str(exc)) from exc
        rates = op.rates_with_intervals(p_good, is_good, point)
        print(f"Saved for run {run_id}: {_describe_point(point)}")
        print(f"On {args.subset}: {rates.describe()}; unsure {rates.unsure} of {len(p_good)}. "
              "Exported models carry it; 'densestudio predict' prints OK/NG/UNSURE.")
    return EXIT_OK


def _print_miss_claim(
    p_good: np.ndarray, is_good: np.ndarray, threshold: float, target: float
) -> None:
    """What the defect images can show: the miss rate's upper bound and the images needed
    to claim ``target``."""
    from densestudio.core.stats import images_needed_sentence
    from densestudio.ml import operating_point as op

    r = op.rates_with_intervals(p_good, is_good, threshold)
    print(f"At {threshold:.4g}: {r.misses} of {r.n_defective} defect images missed, so the true "
          f"miss rate is at most {r.miss_upper * 100:.2f} % (95 % confidence, one-sided); "
          f"{images_needed_sentence(target)}.")


def _describe_point(point: OperatingPoint | None) -> str:
    if point is None:
        return "none"
    band = (f", unsure band [{point.unsure_low:g}, {point.unsure_high:g})"
            if point.unsure_low is not None else "")
    return f"good class '{point.good_class}', OK when P(good) >= {point.threshold:g}{band}"


def add_ml_commands(sub: argparse._SubParsersAction) -> None:
    """Training-engine subcommands; see densestudio/ml."""
    from densestudio.ml.config import ARCHS, AUGMENTS, BALANCES, DEVICES, MONITORS, STRATEGIES

    p = sub.add_parser("train", help="train a DenseNet on the project's labeled images")
    p.add_argument("project")
    p.add_argument("--arch", choices=ARCHS, help="architecture (default: chosen from the data)")
    p.add_argument("--pretrained", action="store_true",
                   help="start from ImageNet weights (torch hub cache or download)")
    p.add_argument("--weights", metavar="FILE", help="ImageNet weights file to start from")
    p.add_argument("--offline", action="store_true", help="never download weights")
    p.add_argument("--scratch", action="store_true",
                   help="random starting weights: not DenseStudio's built-in backbone")
    p.add_argument("--img-size", type=SIZE, metavar="PX",
                   help="base input size (the canvas keeps the images' aspect ratio)")
    p.add_argument("--stretch", action="store_true",
                   help="squash images to the canvas instead of keeping their aspect ratio")
    p.add_argument("--minutes", type=MINUTES, metavar="M",
                   help="time budget: plan the epochs to fit about M minutes (default 10)")
    p.add_argument("--max-minutes", type=MINUTES, metavar="M",
                   help="let the time budget grow up to M minutes while validation still "
                        "improves near the planned end")
    p.add_argument("--epochs", type=SIZE,
                   help="train exactly this many epochs (no time budget unless --minutes)")
    p.add_argument("--monitor", choices=MONITORS,
                   help="metric that picks the best checkpoint (default val_balanced_acc)")
    p.add_argument("--batch-size", type=SIZE)
    p.add_argument("--lr", type=LEARNING_RATE, help="peak learning rate")
    p.add_argument("--freeze", choices=STRATEGIES,
                   help="fine-tuning strategy for pretrained models (head = frozen backbone)")
    p.add_argument("--unfreeze-epoch", type=SIZE, metavar="N",
                   help="head_then_full: unfreeze the backbone after N epochs")
    p.add_argument("--augment", choices=AUGMENTS)
    p.add_argument("--balance", choices=BALANCES, help="class-imbalance handling")
    p.add_argument("--patience", type=SIZE, metavar="N",
                   help="early stopping after N epochs without improvement (0 = off)")
    p.add_argument("--seed", type=SEED)
    p.add_argument("--device", choices=DEVICES, default="auto")
    tta = p.add_mutually_exclusive_group()
    tta.add_argument("--tta", action="store_true",
                     help="test-time augmentation: average the flips/rotations the "
                          "augmentation trains on (evaluation and the exported model)")
    tta.add_argument("--no-tta", action="store_true", help="no test-time augmentation")
    p.add_argument("--no-ema", action="store_true", help="no moving average of weights")
    p.add_argument("--no-amp", action="store_true", help="full precision only")
    p.add_argument("--memory-efficient", action="store_true",
                   help="gradient checkpointing (less memory, slower)")
    p.add_argument("--name", help="a name for the run")
    p.add_argument("--good", metavar="CLASS",
                   help="the class that means a good part (stored in the project; see "
                        "good-class): the run ends with an OK/NG operating point")
    p.add_argument("--max-miss-rate", type=RATE, metavar="R",
                   help="OK/NG target: at most this share of defects passed as good, shown "
                        "on validation (default 0.02)")
    p.add_argument("--resume", type=RUN_ID, metavar="RUN",
                   help="continue a cancelled or crashed run from its last checkpoint")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("good-class", help="show, set or clear the class that means a good "
                       "part (found from the class names unless set)")
    p.add_argument("project")
    p.add_argument("name", nargs="?", metavar="NAME", help="set this class as the good one")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--clear", action="store_true", help="no class means good")
    which.add_argument("--auto", action="store_true", help="find it from the class names")
    p.set_defaults(func=cmd_good_class)

    from densestudio.ml import pretrain_setup

    p = sub.add_parser("pretrain", help="pretrain the compact model's backbone on generated "
                       "images (resumable; writes backbone.pt and backbone.json)")
    pretrain_setup.build_parser(p)
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("evaluate", help="accuracy, per-class metrics and confusion matrix")
    p.add_argument("project")
    p.add_argument("--run", type=RUN_ID, help="run id (default: the latest finished run)")
    p.add_argument("--subset", choices=["val", "test", "both"], default="test")
    p.add_argument("--tta", action="store_true", help="re-predict with flip TTA")
    p.add_argument("--recompute", action="store_true", help="re-predict instead of stored")
    p.add_argument("--top", type=COUNT, default=10, metavar="N", help="show N top losses")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("export", help="write a run's model as one self-describing file, "
                       "checked against the app (ONNX by default)")
    p.add_argument("project")
    p.add_argument("out", help="output file (.onnx; .pt = TorchScript) or a folder")
    p.add_argument("--run", type=RUN_ID, help="run id (default: the approved run, else the latest "
                                           "finished run)")
    p.add_argument("--format", choices=["onnx", "torchscript"],
                   help="model format (default: from OUT's extension, else onnx)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("predict", help="classify images with an exported model (no project, "
                       "no torch for .onnx); prints OK/NG/UNSURE too when the model has an "
                       "operating point, UNSURE for images unlike the training images")
    p.add_argument("model", help="an exported .onnx (or TorchScript .pt) file")
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER")
    p.add_argument("--csv", metavar="OUT", help="write results to a CSV file")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("operating-point", help="OK/NG threshold of a run: show the miss vs "
                       "false-reject trade-off, suggest, set or clear it")
    p.add_argument("project")
    p.add_argument("--run", type=RUN_ID, help="run id (default: the latest finished run)")
    p.add_argument("--subset", choices=["val", "test"], default="val",
                   help="predictions to measure on (default: val)")
    p.add_argument("--good", metavar="CLASS", help="the class that means a good part")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--threshold", type=PROBABILITY, metavar="T",
                       help="save: OK when P(good) >= T")
    which.add_argument("--suggest", action="store_true",
                       help="save the threshold with the lowest expected cost")
    which.add_argument("--clear", action="store_true", help="remove the operating point")
    which.add_argument("--max-miss-rate", type=RATE, metavar="R",
                       help="save the threshold with the fewest false rejects whose 95 %% "
                            "upper bound on the miss rate is <= R (e.g. 0.01)")
    p.add_argument("--cost-miss", type=COST, default=1.0, metavar="A",
                   help="cost of passing a defective part (default 1)")
    p.add_argument("--cost-false-reject", type=COST, default=1.0, metavar="B",
                   help="cost of rejecting a good part (default 1)")
    p.add_argument("--unsure", type=PROBABILITY, nargs=2, metavar=("LOW", "HIGH"),
                   help="send parts with LOW <= P(good) < HIGH to a person (UNSURE)")
    p.set_defaults(func=cmd_operating_point)


# ============================================================== label audit
def cmd_audit(args: argparse.Namespace) -> int:
    from densestudio.ml import crossval
    from densestudio.ml.events import PreparingData
    from densestudio.ml.runtime import resolve_device

    line = ProgressLine()
    cancel = CancelToken()

    def on_event(e: object) -> None:
        if isinstance(e, PreparingData):
            line.update(f"preparing images {bar(e.done / max(e.total, 1))} {e.done}/{e.total}"
                        f" ({e.from_disk_cache} from cache)", force=e.done == e.total)
        elif isinstance(e, crossval.AuditStarted):
            line.done()
            print(f"Label audit: {e.n_images} labeled images, {e.folds} folds x {e.epochs} "
                  f"epochs on {e.device}")
        elif isinstance(e, crossval.AuditProgress):
            line.update(f"fold {e.fold}/{e.folds} epoch {e.epoch}/{e.epochs} "
                        f"{bar(e.step / e.steps)} ETA {format_eta(e.eta_s)}")
        elif isinstance(e, crossval.FoldEnded):
            line.done() if line._tty else None
            print(f"fold {e.fold}/{e.folds}: {e.held_out} images predicted, "
                  f"{e.accuracy * 100:.1f} % agree with their labels, {e.seconds:.0f} s",
                  flush=True)

    with open_project(args.project) as project:
        if args.show:
            audit = crossval.load_audit(project)
            if audit is None:
                raise DenseStudioError("This project has no label audit yet; run "
                                       f"`densestudio audit {args.project}`.")
        else:
            counts = project.counts()
            n = counts.total - counts.count(None)
            cfg = crossval.audit_config(n, resolve_device(args.device).type)
            changes: dict[str, object] = {"device": args.device}
            for name in ("epochs", "img_size", "arch", "seed"):
                if getattr(args, name) is not None:
                    changes[name] = getattr(args, name)
            cfg = cfg.with_(**changes)
            try:
                with ctrl_c_cancels(cancel):
                    audit = crossval.cross_validate(project, args.folds, cfg, on_event, cancel)
            finally:
                line.done()
        suspects = audit.suspects()
        print(f"Audit {audit.run_id}: {len(audit.image_ids)} images, {audit.folds} folds, "
              f"out-of-sample accuracy {audit.oos_accuracy * 100:.1f} %; {len(suspects)} "
              f"suspected label error(s)"
              + (f", {len(audit.confirmed)} confirmed right" if audit.confirmed else "") + ".")
        for note in audit.notes():
            print(f"Note: {note}")
        top = suspects[: args.top]
        if top:
            infos = {i.id: i for i in project.images_by_ids([audit.image_id(t) for t in top])}
            names = audit.class_names
            width = max(len(f"{names[t.given]} -> {names[t.suggested]}") for t in top)
            print(f"{'rank':>4}  {'score':>6}  {'given -> suggested':<{width}}  "
                  f"{'conf.':>5}  image")
            for rank, t in enumerate(top, 1):
                info = infos.get(audit.image_id(t))
                pair = f"{names[t.given]} -> {names[t.suggested]}"
                conf = float(audit.probs[t.index, t.suggested])
                print(f"{rank:>4}  {t.score:>6.3f}  {pair:<{width}}  {conf * 100:>4.0f}%  "
                      f"{info.path if info else audit.image_id(t)}")
    return 130 if cancel.cancelled else EXIT_OK


def add_audit_commands(sub: argparse._SubParsersAction) -> None:
    from densestudio.ml.config import COMPACT_ARCHS, DEVICES

    p = sub.add_parser("audit", help="find images whose label looks wrong (k-fold "
                                     "cross-training + confident learning)")
    p.add_argument("project")
    p.add_argument("--folds", type=SIZE, default=5, help="k of the k-fold cross-training")
    p.add_argument("--epochs", type=SIZE, help="epochs per fold (default: from the data size)")
    p.add_argument("--img-size", type=SIZE, metavar="PX", help="image size (default 64)")
    p.add_argument("--arch", choices=COMPACT_ARCHS, help="compact model trained per fold")
    p.add_argument("--seed", type=SEED)
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument("--top", type=COUNT, default=20, metavar="N",
                   help="print the N most suspicious images (default 20)")
    p.add_argument("--show", action="store_true",
                   help="print the stored audit again instead of running a new one")
    p.set_defaults(func=cmd_audit)


# ============================================================== entry point
COMMAND_GROUPS: list[Callable[[argparse._SubParsersAction], None]] = [
    add_core_commands,
    add_ml_commands,
    add_audit_commands,
    add_signoff_commands,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="densestudio",
        description="DenseStudio: label images, train a DenseNet, review, export. "
        "Run without a command to open the desktop app.",
    )
    parser.add_argument("--version", action="version", version=f"densestudio {__version__}")
    parser.add_argument("--user", metavar="NAME", type=author,
                        help="who label changes and approvals are recorded as (default: "
                             "$DENSESTUDIO_USER or the OS user)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in COMMAND_GROUPS:
        add(sub)
    return parser


class _StderrLog(logging.Handler):
    """Warnings of core/ml (e.g. a rebuilt thumbnail cache) as 'warning: ...' lines."""

    def emit(self, record: logging.LogRecord) -> None:
        print(f"{record.levelname.lower()}: {record.getMessage()}", file=sys.stderr)


def _setup_output() -> None:
    """File names need not be UTF-8: print their odd bytes escaped (caf\udce9.png) instead
    of failing with UnicodeEncodeError; show core's warnings on stderr."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError, OSError):
            stream.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
    log = logging.getLogger("densestudio")
    if not any(isinstance(h, _StderrLog) for h in log.handlers):
        log.addHandler(_StderrLog(logging.WARNING))
        log.setLevel(logging.INFO)


def _storage_error(exc: Exception, args: argparse.Namespace) -> str | None:
    """A message for a database error that escaped the core's own translation."""
    if not type(exc).__module__.startswith("sqlalchemy"):
        return None
    from densestudio.core.db import describe, explain_error, project_target

    try:
        target = project_target(getattr(args, "project", None) or "the project")
    except DenseStudioError:
        target = Path("the project")
    return explain_error(exc, target) or f"{describe(target)}: {getattr(exc, 'orig', exc)}"


# Characters that rewrite a terminal or reorder what it shows: controls (ESC, CR, BEL...),
# format characters (the bidi overrides U+202E/U+2066.., zero-width ones), lone surrogates
# (undecodable file-name bytes) and line/paragraph separators.
_UNSAFE = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def terminal_safe(text: str) -> str:
    """``text`` with every unsafe character but newline and tab shown escaped (\x1b,
    \u202e): what user-supplied names, reasons and paths look like on a terminal."""
    if text.isprintable():
        return text
    return "".join(ch if ch in "\n\t" or unicodedata.category(ch) not in _UNSAFE
                   else repr(ch)[1:-1] for ch in text)


class TerminalSafe:
    """stdout/stderr while a command runs: whatever it prints (a class name, an approval
    reason, an author, a file name) goes through ``terminal_safe``; ``unescaped`` is the
    stream itself, for the progress line's own control codes."""

    def __init__(self, stream: TextIO) -> None:
        self.unescaped = stream

    def write(self, text: str) -> int:
        return self.unescaped.write(terminal_safe(text))

    def __getattr__(self, name: str) -> object:
        return getattr(self.unescaped, name)


def main(argv: Sequence[str] | None = None) -> int:
    _setup_output()
    streams = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = TerminalSafe(sys.stdout), TerminalSafe(sys.stderr)
    try:
        return _main(argv)
    finally:
        sys.stdout, sys.stderr = streams


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse has already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    if args.user:
        import os

        from densestudio.core.store import USER_ENV

        os.environ[USER_ENV] = args.user
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # `densestudio info P | head`: the reader has gone, not an error
        with contextlib.suppress(OSError, ValueError, AttributeError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except CancelledError:
        print("\nCancelled.", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("\nInterrupted.", file=sys.stderr)
        return 130
    except DenseStudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # disk full, permission denied, ... on the user's files
        print(f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:
        message = _storage_error(exc, args)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    raise SystemExit(main())
