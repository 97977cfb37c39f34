"""The floor plan holds: imports only flow down the layers of pyproject.toml, and no package's modules import in a
circle. import-linter reads the code statically, so an import inside a function counts as much as one at the top
(a check of ``sys.modules`` after an import cannot see those)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_imports_only_flow_down_and_never_in_a_circle(monkeypatch, capsys) -> None:
    from importlinter.cli import lint_imports

    monkeypatch.chdir(ROOT)
    code = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True)
    assert code == 0, capsys.readouterr().out  # the report names every import that breaks a contract
