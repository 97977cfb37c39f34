"""Several processes on one run: who is rank zero, what the other ranks read, and how a lost rank ends the run.

Lightning's launcher re-runs the same command with ``LOCAL_RANK=1..N-1``; torchrun and SLURM start every
rank themselves with ``RANK``/``SLURM_PROCID``. Only rank zero owns the run folder (lock, checks, config,
clean-up); the other ranks read the config rank zero resolved, so that an automatic choice made there is
not made differently here. A rank that dies (killed, out of memory) would leave its peers waiting in a
collective for the process group's timeout (30 min); the watchers here end the run within seconds with
one line instead. This module imports no Lightning.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import ConfigError

RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID", "GROUP_RANK")
WAIT_FOR_CONFIG_S = 600.0  # torchrun/SLURM start all ranks at once: rank zero may still be reading the data
POLL_S = 0.5


def rank() -> int:
    """This process's rank as the launcher told it (0 when no launcher: a plain single process)."""
    for name in ("RANK", "SLURM_PROCID"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return max((int(os.environ[n]) for n in RANK_VARIABLES if os.environ.get(n, "").isdigit()), default=0)


def is_rank_zero() -> bool:
    """True unless a launcher's variable (RANK, LOCAL_RANK, NODE_RANK, SLURM_PROCID, GROUP_RANK) says otherwise."""
    return all(os.environ.get(n, "0") in ("", "0") for n in RANK_VARIABLES)


def wait_for_config(run_dir: Path, lock: Path, timeout: float = WAIT_FOR_CONFIG_S) -> Path:
    """Wait until rank zero has locked `run_dir` and written this session's ``config.yaml``; return its path.

    A config older than the lock is an earlier session's (rank zero writes it after taking the lock).

    Raises:
        ConfigError: nothing came within `timeout` (rank zero failed or the folder is not shared).
    """
    config = run_dir / "config.yaml"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if config.stat().st_mtime_ns >= lock.stat().st_mtime_ns:
                return config
        except OSError:
            pass
        time.sleep(POLL_S)
    raise ConfigError(
        f"{run_dir}: rank {rank()} waited {timeout:.0f} s for rank 0 to write config.yaml; check rank 0's "
        "output, and that the run folder is on a file system every node sees"
    )


class RankWatch:
    """A thread that ends this process with one line when `check` names a lost rank (a message; None: all well).

    A collective with a dead peer usually fails first (gloo: "Connection reset by peer", a traceback per
    rank): :meth:`explain` then waits briefly for `check` to name the cause and ends the same way.
    """

    def __init__(self, check: Callable[[], str | None], before_exit: Callable[[], None] = lambda: None) -> None:
        self.check, self.before_exit = check, before_exit
        self.done = threading.Event()
        self.ending = threading.Lock()  # the watch thread and explain() may both see the loss: one line
        threading.Thread(target=self._run, daemon=True, name="unetpp-rank-watch").start()

    def _end(self, message: str) -> None:
        if not self.ending.acquire(blocking=False):
            threading.Event().wait()  # the other thread is printing and exiting the process
        print(f"unetpp: error: {message}", file=sys.stderr, flush=True)
        self.before_exit()
        os._exit(1)

    def _run(self) -> None:
        while not self.done.wait(POLL_S):
            message = self.check()
            if message:
                self._end(message)

    def explain(self, wait: float = 5.0) -> None:
        """Called on an exception: if a rank was lost, end with its line (within `wait` s); else return."""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            message = self.check()
            if message:
                self._end(message)
            time.sleep(POLL_S / 5)

    def stop(self) -> None:
        self.done.set()


def watch_parent(what: str) -> RankWatch:
    """On a non-zero rank: exit with one line when the process that started this one is gone.

    Lightning's launcher runs ranks 1..N-1 as children of rank 0; if rank 0 dies they would wait in a
    collective until the process group's timeout.
    """
    parent = os.getppid()

    def check() -> str | None:
        return None if os.getppid() == parent else f"rank 0 (pid {parent}) is gone; rank {rank()} stops too; {what}"

    return RankWatch(check)


def watch_children(children: Callable[[], Sequence], what: str) -> RankWatch:
    """On rank zero: when a rank it launched ends with an error, stop the others and exit with one line.

    `children` returns the launcher's ``subprocess.Popen`` list (empty until it has started them).
    Lightning's own observer does the same silently every 5 s; this one polls faster and says why.
    """

    def check() -> str | None:
        for k, proc in enumerate(children(), start=1):
            code = proc.poll()
            if code:  # None: running; 0: finished normally
                how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
                return f"rank {k} (pid {proc.pid}) {how}; the run is stopped; {what}"
        return None

    def stop_others() -> None:
        for proc in children():
            if proc.poll() is None:
                proc.kill()

    return RankWatch(check, stop_others)
