"""`python -m densestudio` / `densestudio`: the desktop app, or the CLI given a subcommand."""

from __future__ import annotations

import sys


def main() -> int:
    if len(sys.argv) > 1:
        from densestudio.cli import main as cli_main

        return cli_main(sys.argv[1:])
    from densestudio.ui.app import run_app

    return run_app()


if __name__ == "__main__":
    raise SystemExit(main())
