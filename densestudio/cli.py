"""Command line: drives core and ml without Qt.

Every user error becomes a one-line message on stderr and exit code 2 (1 for "finished but
some files were skipped"), never a traceback.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from densestudio import __version__
from densestudio.core.errors import CancelledError, DenseStudioError

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE = 0, 1, 2


class ProgressLine:
    """A single self-overwriting terminal line, updated at most ~10 times a second."""

    def __init__(self, stream=sys.stderr) -> None:  # noqa: ANN001
        self.stream = stream
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
    filled = int(round(max(0.0, min(1.0, fraction)) * width))
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def format_eta(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds < 0:
        return "--:--"
    seconds = int(seconds)
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


# ============================================================== core commands
def cmd_new(args: argparse.Namespace) -> int:
    from densestudio.core.store import Project

    with Project.create(args.project) as project:
        print(f"Created project {project.path}")
    return EXIT_OK


def open_project(path: str):  # noqa: ANN201
    from densestudio.core.store import Project

    return Project.open(path)


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
    for skipped in report.skipped[: args.show_skipped]:
        print(f"  skipped {skipped.path}: {skipped.reason}")
    if len(report.skipped) > args.show_skipped:
        print(f"  ... and {len(report.skipped) - args.show_skipped} more skipped files")
    return EXIT_PARTIAL if report.skipped else EXIT_OK


def cmd_info(args: argparse.Namespace) -> int:
    from densestudio.core.models import SPLITS
    from densestudio.core.store import ImageFilter, split_settings

    with open_project(args.project) as project:
        if args.check_files:
            project.refresh_missing()
        classes = project.classes()
        counts = project.counts()
        settings = split_settings(project)
        missing = project.count_images(ImageFilter(missing=True))
        print(f"Project {project.path}")
        print(f"  images: {counts.total}   labeled: {counts.total - counts.count(None)}"
              f"   unlabeled: {counts.count(None)}   missing files: {missing}")
        ratios = "/".join(f"{r * 100:g}" for r in settings.ratios)
        locked = " (test set locked)" if settings.test_locked else ""
        print(f"  split {ratios}, seed {settings.seed}{locked}")
        header = f"  {'key':>3}  {'class':<24} {'total':>7} " + " ".join(
            f"{s:>7}" for s in SPLITS
        )
        print(header)
        rows = [(c.shortcut or "", c.name, c.id) for c in classes] + [("", "(unlabeled)", None)]
        for key, name, class_id in rows:
            cells = " ".join(f"{counts.count(class_id, s):>7}" for s in SPLITS)
            print(f"  {key:>3}  {name[:24]:<24} {counts.count(class_id):>7} {cells}")
        if missing:
            print(f"\n{missing} image file(s) are missing; use `densestudio relink` to find them:")
            for img in project.missing_images()[:10]:
                print(f"  {img.path}")
    return EXIT_OK


def cmd_export_labels(args: argparse.Namespace) -> int:
    from densestudio.core.exchange import export_labels_csv

    with open_project(args.project) as project:
        n = export_labels_csv(project, Path(args.out))
    print(f"Wrote {n} rows to {args.out}")
    return EXIT_OK


def cmd_relink(args: argparse.Namespace) -> int:
    from densestudio.core.importer import relink

    with open_project(args.project) as project:
        result = relink(project, [Path(p) for p in args.folders])
    print(f"Relinked {result.relinked} image(s); {result.still_missing} still missing.")
    return EXIT_OK if result.still_missing == 0 else EXIT_PARTIAL


def cmd_split(args: argparse.Namespace) -> int:
    from densestudio.core.store import lock_test_split, resplit

    with open_project(args.project) as project:
        if args.lock is not None:
            lock_test_split(project, args.lock == "on")
        if args.group_by is not None:
            from densestudio.core.splits import set_group_by

            with project.transaction() as s:
                set_group_by(s, "" if args.group_by == "none" else args.group_by)
        if args.resplit:
            ratios = tuple(float(x) for x in args.ratios.split(",")) if args.ratios else None
            n = resplit(project, ratios, args.seed)  # type: ignore[arg-type]
            print(f"Re-assigned splits of {n} image(s).")
        if args.group_by is not None and not args.resplit:
            print("Group key saved; it applies to new images. Use --resplit to apply it to all.")
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
                                   for i, sp in zip(group.image_ids, group.splits)))
        if args.move and groups:
            print(f"Moved {move_together(project, groups)} image(s) so each group shares a split.")
    return EXIT_OK


def add_core_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("new", help="create an empty project file")
    p.add_argument("project", help="path of the new project (.dsproj added if missing)")
    p.set_defaults(func=cmd_new)

    p = sub.add_parser("import", help="import image folders or files into a project")
    p.add_argument("project")
    p.add_argument("paths", nargs="+", help="folders (searched recursively) or image files")
    p.add_argument("--labels-from-subfolders", action="store_true",
                   help="label each image with the name of the sub-folder it is in")
    p.add_argument("--show-skipped", type=int, default=20, metavar="N",
                   help="list at most N skipped files (default 20)")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("info", help="classes, counts per class and split, missing files")
    p.add_argument("project")
    p.add_argument("--check-files", action="store_true",
                   help="check that every image file still exists first")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("export-labels", help="write path,hash,label,split rows to a CSV file")
    p.add_argument("project")
    p.add_argument("out")
    p.set_defaults(func=cmd_export_labels)

    p = sub.add_parser("relink", help="find moved images by content in new folders")
    p.add_argument("project")
    p.add_argument("folders", nargs="+")
    p.set_defaults(func=cmd_relink)

    p = sub.add_parser("split", help="show, re-assign or lock the train/val/test split")
    p.add_argument("project")
    p.add_argument("--resplit", action="store_true", help="re-assign all non-locked images")
    p.add_argument("--ratios", help="train,val,test fractions, e.g. 0.7,0.15,0.15")
    p.add_argument("--seed", type=int)
    p.add_argument("--lock", choices=["on", "off"], help="lock or unlock the test set")
    p.add_argument("--group-by", metavar="KEY",
                   help="keep groups in one split: 'folder', 'regex:PATTERN' (first group of "
                        "the pattern on the file name, e.g. 'regex:(lot\\d+)'), or 'none'")
    p.set_defaults(func=cmd_split)

    p = sub.add_parser("duplicates", help="near-identical images that sit in different splits")
    p.add_argument("project")
    p.add_argument("--max-distance", type=int, default=3, help="dHash bits that may differ (0-3)")
    p.add_argument("--move", action="store_true", help="move each group into one split")
    p.set_defaults(func=cmd_duplicates)


# ============================================================== ml commands
# (train / evaluate / export / predict are registered by add_ml_commands below)
def add_ml_commands(sub: argparse._SubParsersAction) -> None:
    """Training-engine subcommands; see densestudio/ml."""


# ============================================================== entry point
COMMAND_GROUPS: list[Callable[[argparse._SubParsersAction], None]] = [
    add_core_commands,
    add_ml_commands,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="densestudio",
        description="DenseStudio: label images, train a DenseNet, review, export. "
        "Run without a command to open the desktop app.",
    )
    parser.add_argument("--version", action="version", version=f"densestudio {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in COMMAND_GROUPS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
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


if __name__ == "__main__":
    raise SystemExit(main())
