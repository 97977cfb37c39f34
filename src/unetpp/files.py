"""Writing files so that a crash or a kill never leaves half a file, and nothing is overwritten unasked."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from .errors import DataError, UnetppError


def atomic_write(
    path: str | os.PathLike[str],
    write: Callable[[Path], None],
    overwrite: bool = False,
    error: type[UnetppError] = DataError,
) -> Path:
    """Call ``write(tmp)`` on a temporary file beside `path`, then rename it into place.

    The temporary file keeps the full suffix (``.nii.gz``, ``.onnx``): writers choose the format from it.

    Raises:
        `error`: `path` exists and `overwrite` is False.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise error(f"{path}: file exists; choose another path or pass overwrite=True")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix="".join(path.suffixes))
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; outputs are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
