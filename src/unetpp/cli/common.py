"""What every subcommand shares: the parser with an example, shapes, labelled data, CSV text."""

from __future__ import annotations

import argparse
import csv
import io
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..data import SegmentationDataset
    from ..models import NestedUNet


def examples(*lines: str) -> str:
    return "Example:\n" + "\n".join(f"  {line}" for line in lines)


def subcommand(prog: str, help: str, example: str, sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """A subcommand whose --help shows its description and an example."""
    return sub.add_parser(
        prog, help=help, description=help, epilog=example, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def parse_shape(text: str) -> tuple[int, ...]:
    from ..errors import ConfigError

    try:
        return tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise ConfigError(f"--shape must look like 1x1x512x512 (B x C x spatial...), got {text!r}") from None


def csv_text(rows: list[dict]) -> str:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue()


def labelled_dataset(root: str, layout: str, model: NestedUNet) -> SegmentationDataset:
    """The labelled images at `root` in `layout`, read as the model expects (channels, 2D/3D, classes)."""
    from ..config import DataConfig
    from ..data.layouts import open_dataset

    channels = {1: "grey", 3: "rgb"}.get(model.in_channels, "keep")
    cfg = DataConfig(root=root, layout=layout, channels=channels, cache=False)
    return open_dataset(cfg, model.spatial_dims, model.classes)


def add_postprocess(p: argparse.ArgumentParser) -> None:
    """``--postprocess/--no-postprocess``: one flag, one help, for predict and evaluate."""
    p.add_argument(
        "--postprocess",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="remove predicted components smaller than the sizes training chose on validation (the model file's "
        "record; default: on where recorded); --no-postprocess keeps every component",
    )


def check_option(ok: bool, option: str, value: object, expected: str) -> None:
    """One line naming the command-line option (not the library argument behind it) when `ok` is False."""
    from ..errors import ConfigError

    if not ok:
        raise ConfigError(f"{option}: got {value!r}; expected {expected}")
