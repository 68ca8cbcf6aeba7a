"""The ``optimal-scaling`` command.

optimal-scaling env                         what this machine offers the course
optimal-scaling sync [DIR ...]              rewrite each .ipynb from its .py
optimal-scaling check [DIR ...]             fail on drifted pairs or committed outputs
optimal-scaling exercises [--check]         generate exercises/ from solutions/
"""

from __future__ import annotations

import argparse
import sys

NOTEBOOK_DIRS = ["lectures", "solutions", "exercises"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="optimal-scaling",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("env", help="print the environment report")
    for name in ("sync", "check"):
        p = sub.add_parser(name, help=f"notebook pairs: {name}")
        p.add_argument("dirs", nargs="*", default=NOTEBOOK_DIRS)
    p = sub.add_parser("exercises", help="generate exercises/ from solutions/")
    p.add_argument("--solutions", default="solutions")
    p.add_argument("--exercises", default="exercises")
    p.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)

    if args.command == "env":
        from optimal_scaling.config import environment

        report = environment()
        width = max(map(len, report))
        for key, value in report.items():
            print(f"{key:<{width}}  {value}")
        return 0
    if args.command in ("sync", "check"):
        from optimal_scaling import notebooks

        return notebooks.main([args.command, *args.dirs])
    from optimal_scaling import exercises

    return exercises.main([args.solutions, args.exercises] + (["--check"] if args.check else []))


if __name__ == "__main__":
    sys.exit(main())
