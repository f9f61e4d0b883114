"""``llava-gemma``: the commands a user runs (plan, estimate, ask, rehearse) and, apart, the ones the
workflow's rules run, one per kind of job.

Structured settings arrive as JSON (``--settings``) from the rule's ``params``, so Snakemake
reruns a job when its part of the config changes. Errors a user can cause end in one sentence.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from importlib.metadata import PackageNotFoundError, version

from llava_gemma.cli import ask, data, evaluate, planning, rehearse, report, train
from llava_gemma.cli.options import Commands
from llava_gemma.errors import UserError

DESCRIPTION = "The LLaVA-Gemma design study's commands: what a user runs, and apart, what the workflow's rules run."
USER_GROUPS = (planning, ask, rehearse)
RULE_GROUPS = (data, train, evaluate, report)  # in the order of the data's journey


def package_version() -> str:
    try:
        return version("llava-gemma")
    except PackageNotFoundError:  # run from a checkout without `pip install -e .`
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="llava-gemma", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="<command>", title="commands for you")
    commands = Commands(sub, p)
    for group in (*USER_GROUPS, *RULE_GROUPS):
        group.register(commands)
    p.epilog = ("commands the workflow's rules run (internal; `llava-gemma <command> --help` describes each):\n  "
                + "\n  ".join(_wrap(commands.internal)))
    return p


def _wrap(names: list[str], width: int = 76) -> list[str]:
    lines, line = [], ""
    for name in names:
        if line and len(line) + len(name) + 2 > width:
            lines.append(line + ",")
            line = ""
        line = f"{line}, {name}" if line else name
    return [*lines, line]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = args.fn(args)
    except (UserError, FileNotFoundError) as err:
        # User-fixable problems: one sentence, no traceback (the log keeps the command line).
        print(f"llava-gemma {args.command}: error: {err}", file=sys.stderr)
        return 1
    if result is not None:
        # One write() for the whole result: ranks of one job share a log, and separate writes of
        # two processes would interleave their JSON.
        sys.stdout.flush()
        os.write(sys.stdout.fileno(), (json.dumps(result, indent=2, default=str) + "\n").encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
