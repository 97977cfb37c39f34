"""Downloads, tested offline: archives built here are served through file:// URLs (urllib opens them)."""

from __future__ import annotations

import hashlib
import logging
import tarfile
import zipfile
from dataclasses import replace

import numpy as np
import pytest

from unetpp import ConfigError, DataError
from unetpp.data import (
    REMOTE_DATASETS,
    RemoteDataset,
    RemoteFile,
    download,
    from_local,
    verify,
    write_image,
    write_mask,
)
from unetpp.data.download import extract, fetch, sha256sum


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def dsb_zip(tmp_path):
    """A two-image stage1_train.zip with Kaggle's layout: ids at the top of the archive."""
    src = tmp_path / "src"
    for name in ("aaa", "bbb"):
        write_image(src / name / "images" / f"{name}.png", np.full((4, 8, 8), 255, np.uint8))
        write_mask(src / name / "masks" / "n0.png", np.eye(8, dtype=np.uint8))
    archive = tmp_path / "stage1_train.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(src.rglob("*")):
            zf.write(path, path.relative_to(src).as_posix())
    return archive


def msd_tar(tmp_path):
    """A Task04_Hippocampus.tar as MSD ships it: one task folder, with macOS ._ files."""
    task = tmp_path / "src" / "Task04_Hippocampus"
    for k in range(2):
        write_image(task / "imagesTr" / f"h_{k}.nii.gz", np.zeros((1, 4, 5, 3), np.float32))
        write_mask(task / "labelsTr" / f"h_{k}.nii.gz", np.ones((4, 5, 3), np.uint8) * 2)
        (task / "imagesTr" / f"._h_{k}.nii.gz").write_bytes(b"AppleDouble")
    (task / "dataset.json").write_text('{"labels": {"0": "background", "1": "Anterior", "2": "Posterior"}}')
    archive = tmp_path / "Task04_Hippocampus.tar"
    with tarfile.open(archive, "w") as tf:
        tf.add(task, arcname="Task04_Hippocampus")
    return archive


def record(archive, name, folder, layout, checksum="auto") -> RemoteDataset:
    digest = sha(archive) if checksum == "auto" else checksum
    return RemoteDataset(name, (RemoteFile(archive.as_uri(), archive.name, digest),), folder, layout)


def test_download_dsb_zip(tmp_path) -> None:
    rec = record(dsb_zip(tmp_path), "dsb2018", "dsb2018/stage1_train", "dsb2018")
    target = download(rec, tmp_path / "data")
    assert target == tmp_path / "data" / "dsb2018" / "stage1_train"
    ds = from_local(rec, target)
    assert ds.ids == ["aaa", "bbb"]
    assert ds[0]["mask"].sum() == 8
    # nothing half-done is left behind, and a second call finds the valid copy without fetching
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["dsb2018"]
    gone = replace(rec, files=(RemoteFile((tmp_path / "missing.zip").as_uri(), "x.zip", None),))
    assert download(gone, tmp_path / "data") == target


def test_download_msd_tar_skips_apple_double_files(tmp_path) -> None:
    rec = record(msd_tar(tmp_path), "msd-hippocampus", "Task04_Hippocampus", "decathlon")
    target = download(rec, tmp_path / "data", keep_archives=True)
    assert (tmp_path / "data" / "Task04_Hippocampus.tar").is_file()
    ds = from_local(rec, target)
    assert len(ds) == 2
    assert ds.classes == 3
    assert ds[1]["mask"].unique().tolist() == [2]


def test_download_isbi_stacks_without_archive(tmp_path) -> None:
    import tifffile

    files = []
    for name in ("train-volume.tif", "train-labels.tif"):
        path = tmp_path / name
        tifffile.imwrite(path, np.full((3, 8, 8), 255, np.uint8), photometric="minisblack")
        files.append(RemoteFile(path.as_uri(), name, sha(path)))
    rec = RemoteDataset("isbi", tuple(files), "isbi2012", "isbi2012")
    ds = from_local(rec, download(rec, tmp_path / "data"))
    assert len(ds) == 3


def test_checksum_mismatch(tmp_path) -> None:
    rec = record(dsb_zip(tmp_path), "dsb2018", "dsb", "dsb2018", checksum="0" * 64)
    with pytest.raises(DataError, match=r"stage1_train\.zip: SHA-256 mismatch: got [0-9a-f]{64}, expected 0{64}"):
        download(rec, tmp_path / "data")
    assert not (tmp_path / "data" / "dsb").exists()
    assert [p.name for p in (tmp_path / "data").iterdir()] == []  # staging removed


def test_unknown_checksum_warns(tmp_path, caplog) -> None:
    archive = dsb_zip(tmp_path)
    with caplog.at_level(logging.WARNING, logger="unetpp.data.download"):
        path = fetch(RemoteFile(archive.as_uri(), "copy.zip", None), tmp_path / "dl")
    assert "no checksum known, download not verified" in caplog.text
    assert sha256sum(path) == sha(archive)


def test_download_failure_names_the_url(tmp_path) -> None:
    url = (tmp_path / "nothing.zip").as_uri()
    with pytest.raises(DataError, match=r"nothing\.zip: download failed"):
        fetch(RemoteFile(url, "nothing.zip"), tmp_path / "dl")
    assert list((tmp_path / "dl").iterdir()) == []


def test_archive_without_the_layout(tmp_path) -> None:
    archive = tmp_path / "wrong.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("readme.txt", "no images here")
    with pytest.raises(DataError, match=r"wrong\.zip: the download holds no dsb2018 layout"):
        download(record(archive, "x", "x", "dsb2018"), tmp_path / "data")


def test_corrupt_and_unsafe_archives(tmp_path) -> None:
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(DataError, match=r"bad\.zip: not a readable archive"):
        extract(bad, tmp_path / "out")
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tf:
        (tmp_path / "f").write_text("x")
        tf.add(tmp_path / "f", arcname="../escape.txt")
    with pytest.raises(DataError, match=r"evil\.tar: member '\.\./escape\.txt' would be written outside"):
        extract(evil, tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists()


def test_existing_invalid_folder_needs_overwrite(tmp_path) -> None:
    rec = record(dsb_zip(tmp_path), "dsb2018", "dsb", "dsb2018")
    (tmp_path / "data" / "dsb").mkdir(parents=True)
    with pytest.raises(DataError, match=r"dsb: exists but is not a valid copy"):
        download(rec, tmp_path / "data")
    assert from_local(rec, download(rec, tmp_path / "data", overwrite=True)).ids == ["aaa", "bbb"]


def test_every_record_names_a_layout_that_recognises_and_reads_its_copy(tmp_path) -> None:
    """Each downloadable data set goes through its row of the one layout table: recognised, then read."""
    from unetpp.data.layouts import LAYOUTS

    assert set(REMOTE_DATASETS) == {"isbi2012", "dsb2018", "msd-hippocampus"}
    rows = {name: LAYOUTS[record.layout] for name, record in REMOTE_DATASETS.items()}
    assert {name: row.name for name, row in rows.items()} == {
        "isbi2012": "isbi2012",
        "dsb2018": "dsb2018",
        "msd-hippocampus": "decathlon",
    }
    dsb = extract(dsb_zip(tmp_path), tmp_path / "dsb")
    assert rows["dsb2018"].looks_like(dsb)
    assert not rows["msd-hippocampus"].looks_like(dsb)
    assert from_local("dsb2018", dsb).ids == ["aaa", "bbb"]
    with pytest.raises(ConfigError, match=r"layout 'cifar' is not one of \['folders', 'isbi2012'"):
        RemoteDataset("x", (), "x", "cifar")


def test_verify_refuses_wrong_folders_and_names(tmp_path) -> None:
    with pytest.raises(DataError, match=r"not an ISBI 2012 folder"):
        verify("isbi2012", tmp_path)
    with pytest.raises(ConfigError, match="unknown data set 'cifar'"):
        verify("cifar", tmp_path)
