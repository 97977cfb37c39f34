"""The preprocessing of training, repeated at prediction from the checkpoint alone (issue 9's plan).

A run's checkpoint records in its model header how images were prepared (channels, normalisation with
CT statistics, target spacing); prediction converts each input the same way, and gives back the shape to
resample predictions to, so masks are written on the input's own grid with its own affine.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, DataError

if TYPE_CHECKING:
    import numpy as np

PathLike = str | os.PathLike[str]


def match_channels(image: np.ndarray, in_channels: int, path: PathLike) -> np.ndarray:
    """`image` ``(C, *spatial)`` with the model's channel count: grey <-> RGB converted, alpha dropped.

    Raises:
        DataError: a channel count that cannot be brought to `in_channels` (the file is named).
    """
    from ..data.datasets import convert_channels

    c = image.shape[0]
    if c == in_channels:
        return image
    if in_channels in (1, 3) and c in (1, 2, 3, 4):
        return convert_channels(image, "grey" if in_channels == 1 else "rgb", path)
    raise DataError(f"{path}: image has {c} channel(s) but the model takes {in_channels}; convert the image")


def saved_preprocessing(path: PathLike) -> dict[str, Any] | None:
    """The preprocessing a training checkpoint records (channels, normalisation, target spacing), or None.

    Written by the training engine in the model header (``checkpoint["unetpp"]["preprocessing"]``), carried
    into pruned ``.pt`` files by ``unetpp prune``, into ``.onnx`` / ``.safetensors`` by ``unetpp export`` and
    into ``config.json`` by :func:`unetpp.save_pretrained` (folders and Hub ids too); other files give None.
    """
    from ..models.provenance import recorded_preprocessing

    return recorded_preprocessing(path)


def prepare_input(
    raw: np.ndarray, meta: Any, in_channels: int, prep: dict[str, Any], normalize: str
) -> tuple[np.ndarray, tuple[int, ...] | None]:
    """The input as training saw it: channels, resampled to the target spacing (3D), normalised.

    Returns the image and the shape to resample predictions back to (None when not resampled).
    """
    from ..data.datasets import convert_channels
    from ..data.resample import on_spacing
    from ..data.transforms import normalize_intensity

    channels = prep.get("channels", "keep")
    image = convert_channels(raw, channels, meta.path) if channels in ("grey", "rgb") else raw
    image = match_channels(image, in_channels, meta.path)
    back = None
    target = prep.get("target_spacing")
    if target is not None and meta.spatial_dims == 3:  # resampled as training did (SegmentationDataset.load)
        resampled, _ = on_spacing(image, meta.spacing, target)
        back = None if resampled is image else tuple(image.shape[1:])
        image = resampled
    stats = None
    if normalize == "ct":
        clip, mean, std = prep.get("intensity_clip"), prep.get("intensity_mean"), prep.get("intensity_std")
        if clip is None or mean is None or std is None:
            raise ConfigError("normalize='ct' needs the intensity statistics the training checkpoint records")
        stats = tuple((float(c[0]), float(c[1]), float(m), float(d)) for c, m, d in zip(clip, mean, std, strict=True))
    return normalize_intensity(image, normalize, stats), back  # type: ignore[arg-type]
