"""Command line: ``python -m patientml_widgets check PATH [--repair]`` and
``python -m patientml_widgets code PATH [--show NAME] [--trust NAME]``.
"""

from __future__ import annotations

import argparse
import sys

from .errors import PatientMLError
from .store.check import check, repair


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m patientml_widgets")
    commands = parser.add_subparsers(dest="command", required=True)
    checking = commands.add_parser("check", help="report every problem of a project folder (changes nothing)")
    checking.add_argument("path", help="the project folder")
    checking.add_argument(
        "--repair",
        action="store_true",
        help="rebuild what the audit trail proves, remove what points nowhere, and say what could not be restored "
        "(close other kernels using the project first)",
    )
    code = commands.add_parser("code", help="list the model code a project holds, read it, trust it")
    code.add_argument("path", help="the project folder")
    code.add_argument("--show", metavar="NAME", help="print the stored source of NAME")
    code.add_argument("--trust", metavar="NAME", help="trust NAME as stored now (read it first)")
    args = parser.parse_args(argv)
    try:
        if args.command == "code":
            return _code(args)
        report = repair(args.path) if args.repair else check(args.path)
    except PatientMLError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report)
    return 0 if report.ok else 1


def _code(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .errors import StoreError
    from .project import Project
    from .records import visible

    if not (Path(args.path) / "patientml.json").exists():
        raise StoreError(f"{args.path} is not a project folder")
    proj = Project.open(args.path)
    if args.show:
        print(repr(proj.model_code(args.show)))
    elif args.trust:
        print(f"trusted {proj.trust_code(args.trust).name!r} (as stored now)")
    else:
        names = [r["name"] for r in proj.session.read().records("code")]
        for name in sorted(names):
            info = proj.model_code(name)
            state = "trusted" if info.trusted else "NOT trusted"
            print(visible(f"{name}: {state}; registered by {info.registered_by} on {info.registered}; {info.file}"))
        if not names:
            print("no model code: this project trains only the built-in networks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
