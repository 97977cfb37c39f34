"""The one writer: a crash or a kill never leaves half a file, and nothing is overwritten unasked.

Every file the project writes (checkpoints, configs, masks, tables, reports, exports) goes through
:func:`atomic_write`, which owns the "file exists, pass --overwrite" rule; :func:`check_output`
applies the same rule before long work starts, so a bad output path fails in the first second.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from ..errors import DataError, UnetppError

PathLike = str | os.PathLike[str]
_TEMPORARY = re.compile(r"\.(.+)\.[a-z0-9_]{8}\.tmp(\.[A-Za-z0-9]+)*")  # mkstemp's names, as atomic_write asks


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_output(path: PathLike, overwrite: bool = False, error: type[UnetppError] = DataError) -> Path:
    """Fail now, in one line, if `path` cannot be written later: it exists, is a folder, or its folder is not writable.

    Nothing is created: a missing parent folder is fine when the nearest existing one is a writable
    folder (the writer creates the rest), so a command that fails later leaves no empty folder behind.

    Raises:
        `error`: the reason, naming the path and what to do.
    """
    path = check_names(path, error)
    if path.is_dir():
        raise error(f"{path}: is a folder; give a file name")
    if path.exists() and not overwrite:
        raise error(f"{path}: file exists; pass --overwrite to replace it, or choose another name")
    check_folder(path.parent, error)
    return path


def check_folder(folder: PathLike, error: type[UnetppError] = DataError) -> Path:
    """Fail now, in one line, if files cannot be created in `folder` (or in the folders that would hold it).

    Raises:
        `error`: a path on the way is a file, or the nearest existing folder is not writable.
    """
    folder = check_names(folder, error)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise error(f"{existing}: is a file, not a folder; choose another output folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise error(f"{existing}: cannot write there ({reason}); choose another folder") from None
    return folder


NAME_MAX, PATH_MAX = 255, 4095  # bytes of one file or folder name, and of a whole path (Linux, macOS)


def check_names(path: PathLike, error: type[UnetppError] = DataError) -> Path:
    """`path`, if the file system can hold its names; else one line (not an OSError from deep inside a writer).

    Raises:
        `error`: a file or folder name longer than NAME_MAX bytes, or a path longer than PATH_MAX.
    """
    path = Path(path)
    longest = max((os.fsencode(part) for part in path.parts), key=len, default=b"")
    if len(longest) > NAME_MAX or len(os.fsencode(str(path))) > PATH_MAX:
        shown = str(path) if len(str(path)) <= 60 else f"{str(path)[:40]}...{str(path)[-12:]}"
        raise error(
            f"{shown}: a name in this path has {len(longest)} bytes, over the {NAME_MAX} a file system allows "
            "(or the path is too long); choose a shorter name"
        )
    return path


def first_missing(path: PathLike) -> Path | None:
    """The topmost folder of `path` that does not exist yet (what a failed command must remove), or None."""
    path, missing = Path(path), None
    while not path.exists() and path != path.parent:
        missing, path = path, path.parent
    return missing


def temporaries(folder: PathLike) -> list[Path]:
    """Temporary files that :func:`atomic_write` left in `folder` when its process was killed mid-write."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(".*.tmp*") if p.is_file() and _TEMPORARY.fullmatch(p.name))


def remove_temporaries_of(paths: Iterable[PathLike]) -> list[Path]:
    """Remove the temporary files that killed writes of `paths` left beside them; returns those removed.

    For a command run again after a kill (predict, export): only its own outputs' temporaries go, so another
    command writing other files into the same folder (a part of a split prediction) is never touched.
    """
    wanted: dict[Path, set[str]] = {}
    for p in map(Path, paths):
        wanted.setdefault(p.parent, set()).add(p.name)
    removed = []
    for folder, names in wanted.items():
        for tmp in temporaries(folder):
            match = _TEMPORARY.fullmatch(tmp.name)
            if match and match.group(1) in names:
                tmp.unlink(missing_ok=True)
                removed.append(tmp)
        for name in names:  # a writer's scratch folder (ONNX quantization), named after its file
            for work in folder.glob(f".{glob.escape(name)}.work-*"):
                shutil.rmtree(work, ignore_errors=True)
                removed.append(work)
    return removed


def _is_write_failure(e: BaseException) -> str | None:
    """The reason when `e` is a failed write (disk full, file too large...), also as C++ writers report it."""
    if isinstance(e, OSError):
        return e.strerror or type(e).__name__
    text = str(e)
    if isinstance(e, RuntimeError) and ("write failed" in text or "No space left" in text):
        return "write failed: the disk may be full"  # torch.save's stream writer: "file write failed"
    return None


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
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp" + "".join(path.suffixes))
    except OSError as e:
        raise error(f"{path}: could not be written ({e.strerror or type(e).__name__}); nothing was changed") from None
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        reason = _is_write_failure(e)
        if reason is None:
            raise
        raise error(f"{path}: could not be written ({reason}); nothing was changed") from None
    return path


def write_text(path: PathLike, text: str, overwrite: bool = False, error: type[UnetppError] = DataError) -> Path:
    """Write a text file (CSV, JSON, YAML, Markdown, HTML) through :func:`atomic_write`."""
    return atomic_write(path, lambda tmp: tmp.write_text(text), overwrite, error)
