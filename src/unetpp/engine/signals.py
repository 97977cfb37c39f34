"""How a training stopped by a signal ends: ``last.ckpt`` saved first, then a non-zero exit a scheduler understands.

Lightning turns SIGTERM into a ``SystemExit`` with code 0 and Ctrl-C into ``sys.exit(1)``; a batch
scheduler needs 143 (128 + SIGTERM) and a shell 130 (128 + SIGINT). :func:`unetpp.engine.train.fit`
raises :class:`Terminated` or ``KeyboardInterrupt`` instead, and the CLI maps them to those codes.
This module imports no Lightning: the CLI imports it to catch the exception.
"""

from __future__ import annotations

import signal


class Terminated(Exception):  # noqa: N818 (named as the signal's effect, like KeyboardInterrupt)
    """Training was stopped by SIGTERM after saving its last checkpoint; exit with 128 + the signal."""

    def __init__(self, message: str, signum: int = signal.SIGTERM) -> None:
        super().__init__(message)
        self.exit_code = 128 + int(signum)
