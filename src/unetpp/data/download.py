"""Download the paper's public data sets, or check a copy you already have (offline).

Each data set is a :class:`RemoteDataset` record: where its files are, their SHA-256 checksums, and the
layout it must have once extracted. :func:`download` streams each file to a temporary file while hashing
it, checks the hash, renames it into place, extracts archives safely (no paths outside the target) into a
temporary folder and renames that into place too, so an interrupted download never looks complete.
:func:`verify` and :func:`from_local` check a local copy's layout without any network.

About the records below, honestly:

* The URLs are the ones the data sets' users commonly fetch; they could not be tried from the machine
  this code was written on (no internet), so treat them as best known, not as tested.
* No official SHA-256 is published for these files and none could be computed here, so ``sha256`` is
  ``None``: the download then logs a warning that it is not verified. Once you have a copy you trust,
  pin its hash with :func:`sha256sum` and ``dataclasses.replace(record, files=...)``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import ConfigError, DataError
from ..utils.atomic import first_missing
from .datasets import SegmentationDataset
from .layouts import LAYOUTS

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]

_CHUNK = 1 << 20
_MSD_MIRROR = "https://msd-for-monai.s3-us-west-2.amazonaws.com"


@dataclass(frozen=True)
class RemoteFile:
    """One file to fetch.

    Args:
        url: ``https://``, ``http://`` or ``file://`` address.
        filename: name to save it under.
        sha256: expected hex digest; ``None`` skips verification with a warning.
    """

    url: str
    filename: str
    sha256: str | None = None


@dataclass(frozen=True)
class RemoteDataset:
    """A downloadable data set: its files and the layout they must produce.

    Args:
        name: short name (a key of :data:`REMOTE_DATASETS`).
        files: what to fetch; ``.zip``, ``.tar``, ``.tar.gz`` and ``.tgz`` files are extracted.
        folder: the data set's folder under the download root.
        layout: the name of its row in :data:`unetpp.data.layouts.LAYOUTS`, whose reader must accept it.
        homepage: where the data set, its licence and its citation are described.
    """

    name: str
    files: tuple[RemoteFile, ...]
    folder: str
    layout: str
    homepage: str = ""

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS or LAYOUTS[self.layout].looks_like is None:
            known = [n for n, row in LAYOUTS.items() if row.looks_like is not None]
            raise ConfigError(f"RemoteDataset {self.name!r}: layout {self.layout!r} is not one of {known}")


REMOTE_DATASETS: dict[str, RemoteDataset] = {
    # The challenge server is decommissioned; imagej.net's ISBI 2012 page links this archive instead.
    "isbi2012": RemoteDataset(
        "isbi2012",
        (RemoteFile("https://downloads.imagej.net/ISBI-2012-challenge.zip", "ISBI-2012-challenge.zip", None),),
        "isbi2012",
        "isbi2012",
        "https://imagej.net/events/isbi-2012-segmentation-challenge",
    ),
    # Kaggle's own download needs an account; BBBC038 is the Broad Institute's copy of the DSB 2018 data.
    "dsb2018": RemoteDataset(
        "dsb2018",
        (RemoteFile("https://data.broadinstitute.org/bbbc/BBBC038/stage1_train.zip", "stage1_train.zip", None),),
        "dsb2018/stage1_train",
        "dsb2018",
        "https://bbbc.broadinstitute.org/BBBC038",
    ),
    # The official archives are on Google Drive (medicaldecathlon.com); this is the mirror MONAI's
    # DecathlonDataset downloads from.
    "msd-hippocampus": RemoteDataset(
        "msd-hippocampus",
        (RemoteFile(f"{_MSD_MIRROR}/Task04_Hippocampus.tar", "Task04_Hippocampus.tar", None),),
        "Task04_Hippocampus",
        "decathlon",
        "http://medicaldecathlon.com",
    ),
}


def _record(dataset: str | RemoteDataset) -> RemoteDataset:
    if isinstance(dataset, RemoteDataset):
        return dataset
    if dataset not in REMOTE_DATASETS:
        raise ConfigError(f"unknown data set {dataset!r}; known: {', '.join(REMOTE_DATASETS)}")
    return REMOTE_DATASETS[dataset]


def sha256sum(path: PathLike) -> str:
    """Hex SHA-256 of a file, read in chunks (to pin the checksum of a copy you trust)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(file: RemoteFile, folder: PathLike, *, timeout: float = 60.0) -> Path:
    """Stream ``file`` into ``folder``, hashing as it goes; rename into place only if the hash matches.

    Raises:
        DataError: the download fails or its SHA-256 differs from ``file.sha256``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / file.filename
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{file.filename}.", suffix=".part")
    tmp = Path(tmp_name)
    logger.info("downloading %s", file.url)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                # urllib also opens file:// addresses: the tests (and local mirrors) use them
                with urllib.request.urlopen(file.url, timeout=timeout) as response:
                    for chunk in iter(lambda: response.read(_CHUNK), b""):
                        digest.update(chunk)
                        out.write(chunk)
            except (urllib.error.URLError, OSError, ValueError) as e:
                raise DataError(f"{file.url}: download failed ({e}); check the address and your connection") from e
        actual = digest.hexdigest()
        if file.sha256 is None:
            logger.warning("%s: no checksum known, download not verified (sha256 %s)", file.filename, actual)
        elif actual != file.sha256.lower():
            raise DataError(
                f"{file.url}: SHA-256 mismatch: got {actual}, expected {file.sha256}; the file is corrupt or has "
                "changed upstream: retry, or check the source"
            )
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def _is_archive(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith((".zip", ".tar", ".tar.gz", ".tgz"))


def _check_member(name: str, archive: Path) -> None:
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
        raise DataError(f"{archive}: member {name!r} would be written outside the target folder; not extracting")


def extract(archive: PathLike, folder: PathLike) -> Path:
    """Extract a ``.zip`` or ``.tar[.gz]`` into ``folder``, refusing members that escape it.

    Raises:
        DataError: a corrupt archive or an unsafe member path.
    """
    archive, folder = Path(archive), Path(folder)
    created = first_missing(folder)
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder, prefix=".extracting-"))  # moved into place only when whole
    try:
        _extract_all(archive, staging)
        for member in sorted(staging.rglob("*")):
            if member.is_file():
                (folder / member.relative_to(staging)).parent.mkdir(parents=True, exist_ok=True)
                os.replace(member, folder / member.relative_to(staging))
            elif member.is_dir():
                (folder / member.relative_to(staging)).mkdir(parents=True, exist_ok=True)
    except BaseException:
        shutil.rmtree(created if created is not None else staging, ignore_errors=True)  # no half-extracted files
        raise
    shutil.rmtree(staging, ignore_errors=True)
    return folder


def _extract_all(archive: Path, folder: Path) -> None:
    try:
        if archive.name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                for name in zf.namelist():
                    _check_member(name, archive)
                zf.extractall(folder)
        else:
            with tarfile.open(archive) as tf:
                members = tf.getmembers()
                for m in members:
                    _check_member(m.name, archive)
                    if m.issym() or m.islnk() or not (m.isfile() or m.isdir()):
                        raise DataError(f"{archive}: member {m.name!r} is a link or device; not extracting")
                if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4 / 3.10.12: the stdlib's own safety net
                    tf.extractall(folder, members=members, filter="data")
                else:
                    tf.extractall(folder, members=members)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as e:
        raise DataError(
            f"{archive}: not a readable archive ({type(e).__name__}: {e}); delete it and download again"
        ) from e


def _locate(root: Path, layout: str) -> Path | None:
    """The first folder at most three levels below ``root`` that looks like ``layout`` (archives nest)."""
    level = [root]
    for _ in range(4):
        for d in level:
            if LAYOUTS[layout].looks_like(d):  # type: ignore[misc]
                return d
        level = [c for d in level for c in sorted(d.iterdir()) if c.is_dir() and not c.name.startswith((".", "__"))]
    return None


def verify(dataset: str | RemoteDataset, path: PathLike) -> Path:
    """Check that ``path`` holds ``dataset`` in its expected layout (offline; files are not all read).

    Raises:
        DataError: missing folders, unpaired files and the other layout problems of the data set's reader.
        ConfigError: unknown data set name.
    """
    record = _record(dataset)
    LAYOUTS[record.layout].reader(Path(path))
    return Path(path)


def from_local(dataset: str | RemoteDataset, path: PathLike, **kwargs) -> SegmentationDataset:
    """Open a local copy (e.g. ``../shared/data/isbi2012-em``) with the data set's reader, after checking it.

    Args:
        dataset: a name of :data:`REMOTE_DATASETS` or a record.
        path: the copy's folder (as :func:`download` makes it, or as the data set's users lay it out).
        **kwargs: passed to the reader (:class:`ISBI2012`, :class:`DSB2018` or :class:`Decathlon`).

    Raises:
        DataError: see :func:`verify`.
    """
    return LAYOUTS[_record(dataset).layout].reader(Path(path), **kwargs)


def download(
    dataset: str | RemoteDataset, root: PathLike, *, overwrite: bool = False, keep_archives: bool = False
) -> Path:
    """Download, check and extract a data set into ``root / record.folder``; return that folder.

    A folder that is already there and passes :func:`verify` is returned without downloading.

    Args:
        dataset: a name of :data:`REMOTE_DATASETS` (``"isbi2012"``, ``"dsb2018"``, ``"msd-hippocampus"``)
            or a :class:`RemoteDataset`.
        root: where data sets live.
        overwrite: replace an existing folder that fails verification.
        keep_archives: keep the downloaded archives next to the data set.

    Raises:
        DataError: download or checksum failure, a bad archive, an archive without the expected layout,
            or an existing invalid folder without ``overwrite``.
        ConfigError: unknown data set name.
    """
    record = _record(dataset)
    root = Path(root)
    target = root / record.folder
    if target.exists():
        try:
            return verify(record, target)
        except DataError as e:
            if not overwrite:
                raise DataError(
                    f"{target}: exists but is not a valid copy ({e}); remove it or pass overwrite=True"
                ) from e
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=f".{record.name}.", suffix=".partial"))
    try:
        downloads = staging / ".downloads"
        content = staging / "content"
        content.mkdir()
        for file in record.files:
            path = fetch(file, downloads)
            if _is_archive(path):
                logger.info("extracting %s", path.name)
                extract(path, content)
                if keep_archives:
                    shutil.copy2(path, root / path.name)
            else:
                os.replace(path, content / path.name)
        found = _locate(content, record.layout)
        if found is None:
            raise DataError(
                f"{record.files[0].url}: the download holds no {record.layout} layout; the archive may have changed"
            )
        verify(record, found)
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(found, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("%s ready in %s", record.name, target)
    return target
