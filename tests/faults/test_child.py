"""The fault injector itself (child.py) holds on any machine, however the suite was started."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path


def test_the_ctrl_c_fault_holds_when_sigint_was_ignored_by_whoever_started_the_suite() -> None:
    """`nohup pytest ... &` hands every child SIGINT ignored; the child must still take a Ctrl-C (int-step)."""
    code = "import child, signal; child.as_from_a_terminal(); print(signal.getsignal(signal.SIGINT).__name__)"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).parent,
        capture_output=True,
        text=True,
        check=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    assert done.stdout.strip() == "default_int_handler"
