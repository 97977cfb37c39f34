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


def unetpp_commands() -> list[list[str]]:
    """Every ``unetpp ...`` command of the README's bash blocks, as argv (comments dropped, lines joined)."""
    import shlex

    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words[:1] == ["unetpp"]:
                commands.append(words[1:])
    return commands


def test_readme_commands_parse(monkeypatch) -> None:
    """Each README command names a real subcommand and real options (argparse exits 2 on anything unknown)."""
    from unetpp.cli.main import build_parser

    commands = unetpp_commands()
    assert len(commands) >= 10
    parser = build_parser()
    for argv in commands:
        parser.parse_args(argv)  # an unknown subcommand or option: SystemExit(2), and the test fails here
