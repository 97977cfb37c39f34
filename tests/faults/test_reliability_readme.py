"""The README's Reliability section states how many bad-input tests the suite has: the count stays honest."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from .conftest import SRC

ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_counts_the_bad_input_tests() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-m",
            "bad_input",
            "-p",
            "no:cacheprovider",
            str(ROOT / "tests" / "faults"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(SRC), "PATH": ""},
        timeout=120,
    )
    collected = [line for line in done.stdout.splitlines() if "::" in line]
    stated = re.search(r"\*\*(\d+) bad-input tests\*\*", (ROOT / "README.md").read_text())
    assert stated, "README.md: no '**N bad-input tests**' in the Reliability section"
    assert int(stated.group(1)) == len(collected) > 0
