"""Sizes checked before anything is allocated: what a file's header declares, how many patches an epoch draws.

A 4 KB ``.nii.gz`` can declare 1500³ float32 voxels; reading it would allocate 13.5 GB before finding the
data missing. A header is read first, its declared size compared with the memory this process may still
use (:func:`unetpp.utils.system.memory_budget_bytes`: available RAM, a container's limit, ``ulimit -v``),
and a file that cannot fit is refused in one line, before a byte of its data is read.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np

from ..errors import ConfigError, DataError

# bytes of memory per declared voxel: read in its own type, then converted to float32 (float64 when NIfTI
# scaling applies) and copied once on the way to a tensor
BYTES_PER_VOXEL = 8
BYTES_PER_PATCH = 16  # an epoch's shuffled order of patch indices (int64) and its copy in the loader


def room_bytes() -> float:
    """What one more allocation may take: the default CPU memory budget of this process, now."""
    from ..utils.system import memory_budget_bytes

    return memory_budget_bytes("cpu")


def check_declared(path: str | os.PathLike[str], shape: Sequence[int], dtype: object) -> None:
    """Refuse a file whose header declares more voxels than memory can hold, before its data is read.

    Raises:
        DataError: naming the file, the declared shape and size, and the memory there is.
    """
    voxels = math.prod(int(s) for s in shape)
    need = voxels * max(BYTES_PER_VOXEL, np.dtype(dtype).itemsize)  # type: ignore[call-overload]
    if need <= 1e8:  # small files never need the check (or the /proc read)
        return
    room = room_bytes()
    if need > room:
        size = "x".join(str(int(s)) for s in shape)
        raise DataError(
            f"{path}: its header declares {size} {np.dtype(dtype)} values, about {need / 1e9:.1f} GB in memory, "  # type: ignore[call-overload]
            f"over the {room / 1e9:.1f} GB available; the file is damaged, or crop or downsample it"
        )


def check_patch_count(images: int, per_image: int) -> None:
    """Refuse an epoch whose list of patches alone would not fit in memory (``data.patches_per_image=1e8``).

    Raises:
        ConfigError: naming data.patches_per_image, the patch count and the memory it needs.
    """
    need = images * per_image * BYTES_PER_PATCH
    if need <= 1e8:
        return
    room = room_bytes()
    if need > room:
        raise ConfigError(
            f"data.patches_per_image={per_image}: {images} image(s) x {per_image} = {images * per_image} patches per "
            f"epoch, whose order alone needs about {need / 1e9:.1f} GB of the {room / 1e9:.1f} GB available; "
            "lower data.patches_per_image"
        )
