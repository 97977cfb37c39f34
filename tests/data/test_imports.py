"""`import unetpp.data` stays light: the format and augmentation libraries load only when used."""

from __future__ import annotations

import subprocess
import sys


def test_import_is_light() -> None:
    code = (
        "import sys, unetpp.data; "
        "print(sorted(m for m in ('PIL', 'tifffile', 'nibabel', 'torchio', 'scipy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
