"""A rank killed mid-run (out of memory, a node lost) ends the whole run within seconds, with one unetpp line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def start(run: Path, scale) -> tuple[subprocess.Popen, int]:
    """A long 2-rank run, once both ranks are in the training loop: (rank zero's process, rank one's pid)."""
    args = ["train", "--run-dir", run, "--epochs", "200", *scale.DDP, *scale.TINY]
    env = {**os.environ, "PYTHONPATH": str(scale.HERE.parents[1] / "src"), "OMP_NUM_THREADS": "1"}
    main = subprocess.Popen(
        [sys.executable, "-m", "unetpp", *map(str, args)], stderr=subprocess.PIPE, text=True, env=env
    )
    deadline = time.monotonic() + 90
    while not (run / "checkpoints" / "last.ckpt").is_file():
        if main.poll() is not None or time.monotonic() > deadline:
            main.kill()
            raise AssertionError(f"the run did not start: {main.communicate()[1][-2000:]}")
        time.sleep(0.2)
    (rank1,) = children(main.pid)
    return main, rank1


def test_killing_rank_one_stops_rank_zero_with_a_message(tmp_path: Path, scale) -> None:
    run = tmp_path / "run"
    main, rank1 = start(run, scale)
    try:
        os.kill(rank1, signal.SIGKILL)
        killed = time.monotonic()
        _, err = main.communicate(timeout=30)
        took = time.monotonic() - killed
    finally:
        if main.poll() is None:
            main.kill()
    assert main.returncode == 1
    assert took < 10, took  # not the process group's 30-minute timeout
    lines = [line for line in err.splitlines() if line.startswith("unetpp:")]
    assert lines == [
        f"unetpp: error: rank 1 (pid {rank1}) was killed by signal 9; the run is stopped; "
        f"resume with: unetpp train --run-dir {run} --resume"
    ], err[-2000:]
    assert "Traceback" not in err


def test_killing_rank_zero_stops_rank_one_with_a_message(tmp_path: Path, scale) -> None:
    run = tmp_path / "run"
    main, rank1 = start(run, scale)
    main.kill()
    killed = time.monotonic()
    err = main.stderr.read()  # rank one holds the same stderr: EOF when it has ended too
    took = time.monotonic() - killed
    try:  # ended: gone, or a zombie that whoever adopted it has not reaped yet
        state = Path(f"/proc/{rank1}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        state = "gone"
    assert state in ("gone", "Z", "X"), state
    assert took < 10, took
    lines = [line for line in err.splitlines() if line.startswith("unetpp:")]
    assert lines == [
        f"unetpp: error: rank 0 (pid {main.pid}) is gone; rank 1 stops too; "
        f"resume with: unetpp train --run-dir {run} --resume"
    ], err[-2000:]
