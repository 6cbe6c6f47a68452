"""`python -m densestudio` / `densestudio`: the desktop app, or the CLI given a subcommand."""

from __future__ import annotations

import sys


def main() -> int:
    opens_project = len(sys.argv) == 2 and sys.argv[1].endswith(".dsproj")  # desktop entry %f
    if len(sys.argv) > 1 and not opens_project:
        from densestudio.cli import main as cli_main

        return cli_main(sys.argv[1:])
    from densestudio.ui.platform_check import display_problem

    problem = display_problem()  # before Qt, which would abort with a generic message
    if problem is not None:
        print(problem, file=sys.stderr)
        return 2
    from densestudio.ui.app import run_app

    return run_app()


if __name__ == "__main__":
    raise SystemExit(main())
