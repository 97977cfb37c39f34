"""The paper's experiments as data: presets shipped in the package (``presets/*.yaml``).

A preset is a study spec without its data folder, plus a budget per use: ``smoke`` (about a minute,
for tests: the numbers mean nothing), ``cpu`` (what a 2-core CPU finishes in about an hour per table,
far from convergence) and ``paper`` (the paper's protocol: 96x96 / 64^3 patches, early stopping,
20 trials), and the paper's numbers it compares against (only those checked against the paper).
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from ..errors import ConfigError
from .spec import StudySpec

PRESETS = ("table1-em", "table4-em", "table4-nuclei", "table4-3d", "fig5", "fig6", "fig7-nuclei")
BUDGETS = ("smoke", "cpu", "paper")


def read_preset(name: str) -> dict[str, Any]:
    """The preset's YAML as a dict (``demo`` too, which `reproduce --list` does not show).

    Raises:
        ConfigError: unknown preset name.
    """
    import yaml

    path = resources.files("unetpp.study") / "presets" / f"{name}.yaml"
    if name not in (*PRESETS, "demo") or not path.is_file():
        raise ConfigError(f"unknown preset {name!r}; presets are {', '.join(PRESETS)} (see `unetpp reproduce --list`)")
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def load_preset(
    preset_name: str, budget: str = "cpu", *, data: str = "", overrides: tuple[str, ...] = (), **fields: Any
) -> StudySpec:
    """The study spec of a preset at a budget, on the user's copy of the data.

    Args:
        preset_name: one of :data:`PRESETS` (or ``demo``).
        budget: ``smoke``, ``cpu`` or ``paper``.
        data: the data set folder.
        overrides: further ``section.field=value`` settings, applied after the preset's.
        **fields: any other :class:`StudySpec` field (e.g. ``test_folder``), overriding the preset.

    Raises:
        ConfigError: unknown preset or budget, or a spec that does not validate.
    """
    if budget not in BUDGETS:
        raise ConfigError(f"unknown budget {budget!r}; budgets are {', '.join(BUDGETS)}")
    name = preset_name
    preset = read_preset(name)
    study = dict(preset["study"])
    b = preset["budgets"][budget]
    if fields.get("test_folder") is not None:
        study.pop("test_ids", None)
        study.pop("test_fraction", None)
    values = {
        **study,
        "epochs": b.get("epochs"),
        "minutes": b.get("minutes"),
        "seeds": tuple(b["seeds"]),
        "overrides": (*study.get("overrides", ()), *b.get("overrides", ()), *overrides),
        "data": data,
        "name": f"{name} ({budget})",
        "paper": preset.get("paper") or {},
        **fields,
    }
    return StudySpec.from_dict(values, f"preset {name}")


def list_presets() -> str:
    """One paragraph per preset: what it runs, its data, budgets and the paper's numbers."""
    lines = []
    for name in PRESETS:
        p = read_preset(name)
        budgets = ", ".join(
            f"{b}: {p['budgets'][b].get('epochs')} epochs × {len(p['budgets'][b]['seeds'])} seed(s)" for b in BUDGETS
        )
        paper = p.get("paper") or {}
        numbers = ", ".join(f"{m} {v:.2f}" for m, v in paper.items()) or "none transcribed (see the paper)"
        lines += [
            f"{name}: {p['title']}",
            f"    models: {', '.join(p['study']['models'])}",
            f"    data: {p['data_set']}",
            f"    budgets: {budgets}",
            f"    paper IoU %: {numbers}",
        ]
    return "\n".join(lines)
