"""The `unetpp` command line: the parser of every subcommand, and one-line errors.

User errors (bad paths, files, options) print one line, ``unetpp: error: ...``, and exit 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence

from ..engine.signals import Terminated
from ..errors import UnetppError
from .common import examples
from .deploy import add_bench, add_export, add_predict, add_prune
from .encoding import plain_streams
from .hub import add_push
from .plan import add_plan
from .study import add_compare, add_reproduce
from .train import add_demo, add_evaluate, add_train

log = logging.getLogger("unetpp")


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    add_demo,
    add_plan,
    add_train,
    add_evaluate,
    add_predict,
    add_prune,
    add_export,
    add_bench,
    add_push,
    add_compare,
    add_reproduce,
]


# what Ctrl-C means, per command (a training run says itself where its checkpoint is)
INTERRUPTED = {
    "train": "interrupted; a training run resumes with --resume from its last checkpoint",
    "predict": "interrupted; rerun the same command to finish the rest (outputs already written are kept)",
    "compare": "interrupted; rerun the same command to continue the study (finished runs are kept)",
    "reproduce": "interrupted; rerun the same command to continue the study (finished runs are kept)",
    "demo": "interrupted; remove the --out folder to start the demo again",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unetpp",
        description="Train, prune, evaluate and deploy UNet++ and its family (Zhou et al., IEEE TMI 2019).",
        epilog=examples("unetpp demo", "unetpp train --data data/em --run-dir runs/em"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="more log output")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    started = _command_start()  # budgets (--minutes) count from the command's start
    plain_streams()  # an ASCII terminal gets "+/-" for "±", not a UnicodeEncodeError
    args = build_parser().parse_args(argv)
    args.started = started
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what a run folder records (commands.txt)
    # progress and results on stdout, problems on stderr (where a failure is exactly one line)
    progress, problems = logging.StreamHandler(sys.stdout), logging.StreamHandler(sys.stderr)
    progress.addFilter(lambda record: record.levelno < logging.WARNING)
    problems.setLevel(logging.WARNING)
    for handler in (progress, problems):
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    shown = warnings.showwarning
    warnings.showwarning = _one_line_warning
    try:
        return args.handler(args)
    except UnetppError as e:
        print(f"unetpp: error: {e}", file=sys.stderr)
        return 2
    except Terminated as e:
        print(f"unetpp: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt as e:
        said = str(e) or INTERRUPTED.get(args.command, "interrupted; files are written whole or not at all")
        print(f"unetpp: {said}", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = shown
        for handler in (progress, problems):  # main() may run again in one process (tests): handlers per call
            log.removeHandler(handler)


_first_command = True  # main() may run again in one process (a benchmark, a notebook): imports count once


def _command_start() -> float:
    """When this command started (``time.monotonic()``): the process start for the first command of a process,
    so that imports count against its budget, and the call itself for every later one."""
    global _first_command
    first, _first_command = _first_command, False
    return time.monotonic() - (_process_age() if first else 0.0)


def _process_age() -> float:
    """Seconds since this process started (Linux /proc; 0 elsewhere): imports count against a budget too."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22, starttime
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


def _one_line_warning(message: Warning | str, category: type[Warning], *args: object, **kwargs: object) -> None:
    """Warnings (an old option spelling, say) as one line on stderr, not Python's two-line form."""
    print(f"unetpp: note: {message}", file=sys.stderr)
