"""One training per run folder: a lock file that says who holds it, released on exit, stale when its owner died.

Two trainings on one folder would share checkpoints and mix their logs. The lock is ``<run>/.lock``,
held with ``fcntl.flock`` while the process lives (the kernel drops it when the process dies, even
by SIGKILL) and holding the owner's pid for the message. Where ``flock`` does not exist the pid
alone decides: a lock whose process is gone is stale and taken over.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from ..errors import ConfigError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _owner(path: Path) -> str:
    try:
        return path.read_text().strip() or "unknown"
    except OSError:
        return "unknown"


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[Path]:
    """Hold the run folder's lock for the body; `run_dir` must exist.

    Raises:
        ConfigError: another live process holds it (its pid and host are named).
    """
    path = run_dir / LOCK_NAME
    me = f"pid {os.getpid()} on {socket.gethostname()}"
    busy = ConfigError(
        f"{run_dir}: another training ({{}}) is using this run folder; wait for it to end, stop it, "
        "or choose another --run-dir"
    )
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ConfigError(str(busy).format(_owner(path))) from None
        else:
            held = _owner(path)
            if held.startswith("pid ") and _alive(int(held.split()[1])) and held.split()[1] != str(os.getpid()):
                raise ConfigError(str(busy).format(held))
        os.ftruncate(fd, 0)
        os.write(fd, (me + "\n").encode())
        try:
            yield path
        finally:
            path.unlink(missing_ok=True)  # before unlocking: a waiting process then creates a fresh file
    finally:
        os.close(fd)
