"""Every Python example of the README runs as written (in a scratch folder, in order, one namespace)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_python_examples_run(tmp_path, monkeypatch) -> None:
    blocks = python_blocks()
    assert len(blocks) >= 2  # the model family and the backbones at least
    monkeypatch.chdir(tmp_path)  # examples may write files (unetpp.save)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)  # noqa: S102 - our own README
    assert (tmp_path / "unetpp_l3.pt").is_file()
