"""Command line: ``python -m patientml_widgets check PATH [--repair]``."""

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
    args = parser.parse_args(argv)
    try:
        report = repair(args.path) if args.repair else check(args.path)
    except PatientMLError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
