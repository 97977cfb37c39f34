"""What a prediction wrote into a folder: its settings and its output files, in ``.unetpp-predict.json``.

Outputs are recognised by this list, never by their names: a user's own ``scan_mask.png`` is an input like
any other, and a rerun into a folder that also holds the inputs does not take last run's masks and
overlays as new images (``a_mask_mask.png``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..errors import ConfigError

MANIFEST = ".unetpp-predict.json"  # the settings the outputs in a folder were made with, and their names


def read(out_dir: Path) -> dict:
    """The manifest of `out_dir` as a mapping (empty when there is none, or it cannot be read)."""
    try:
        data = json.loads((Path(out_dir) / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def listed_outputs(out_dir: Path) -> set[str]:
    """Names of the files that earlier predictions wrote into `out_dir`."""
    names = read(out_dir).get("outputs", [])
    return {str(n) for n in names} if isinstance(names, list) else set()


def text(out_dir: Path, settings: str | None, outputs: Iterable[Path]) -> str:
    """The manifest to write: `settings`, and the outputs listed before plus `outputs` (names in `out_dir`)."""
    names = listed_outputs(out_dir) | {p.name for p in outputs if p.parent == Path(out_dir)}
    return json.dumps({"settings": settings, "outputs": sorted(names)}) + "\n"


def without_outputs(files: Sequence[Path], out_dir: Path, allow_input_folder: bool) -> list[Path]:
    """`files` less the outputs an earlier prediction listed in `out_dir`; refuses `out_dir` as an input folder
    unless `allow_input_folder`.

    Raises:
        ConfigError: an input lies in `out_dir` (its masks would be mixed with the images) and it was not asked for.
    """
    out = Path(out_dir).resolve()
    ours = listed_outputs(out_dir)
    kept = [p for p in files if not (p.parent.resolve() == out and p.name in ours)]
    inside = [p for p in kept if p.parent.resolve() == out]
    if inside and not allow_input_folder:
        raise ConfigError(
            f"--out {out_dir}: holds the inputs (e.g. {inside[0].name}); masks would be mixed with the images. "
            "Choose another --out, or pass --allow-input-folder"
        )
    return kept
