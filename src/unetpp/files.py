"""The one writer: a crash or a kill never leaves half a file, and nothing is overwritten unasked.

Every file the project writes (checkpoints, configs, masks, tables, reports, exports) goes through
:func:`atomic_write`, which owns the "file exists, pass --overwrite" rule; :func:`check_output`
applies the same rule before long work starts, so a bad output path fails in the first second.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from .errors import DataError, UnetppError

PathLike = str | os.PathLike[str]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_output(path: PathLike, overwrite: bool = False, error: type[UnetppError] = DataError) -> Path:
    """Fail now, in one line, if `path` cannot be written later: it exists, is a folder, or its folder is not writable.

    A missing parent folder is created (as every writer here does).

    Raises:
        `error`: the reason, naming the path and what to do.
    """
    path = Path(path)
    if path.is_dir():
        raise error(f"{path}: is a folder; give a file name")
    if path.exists() and not overwrite:
        raise error(f"{path}: file exists; pass --overwrite to replace it, or choose another name")
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as e:
        raise error(f"{parent}: cannot write there ({e.strerror or type(e).__name__}); choose another folder") from None
    return path


def atomic_write(
    path: PathLike,
    write: Callable[[Path], None],
    overwrite: bool = False,
    error: type[UnetppError] = DataError,
) -> Path:
    """Call ``write(tmp)`` on a temporary file beside `path`, flush it to disk, then rename it into place.

    The temporary file keeps the full suffix (``.nii.gz``, ``.onnx``): writers choose the format from it.
    The file gets the permissions of the user's umask (as ``open`` would), not mkstemp's private 0600.

    Raises:
        `error`: `path` exists and `overwrite` is False, or it cannot be written (disk full, read-only).
    """
    path = check_output(path, overwrite, error)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp" + "".join(path.suffixes))
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise error(f"{path}: could not be written ({e.strerror or type(e).__name__}); nothing was changed") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text(path: PathLike, text: str, overwrite: bool = False, error: type[UnetppError] = DataError) -> Path:
    """Write a text file (CSV, JSON, YAML, Markdown, HTML) through :func:`atomic_write`."""
    return atomic_write(path, lambda tmp: tmp.write_text(text), overwrite, error)
