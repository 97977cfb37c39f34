"""The one layout table: each row opens its data set, recognises its folders and picks its own split."""

from __future__ import annotations

import numpy as np
import pytest

from unetpp.config import DataConfig
from unetpp.data import write_image, write_mask
from unetpp.data.layouts import LAYOUTS, layout, open_dataset, split_indices
from unetpp.errors import ConfigError, DataError


def folders(root, n: int = 5):
    for k in range(n):
        write_image(root / "images" / f"s{k}.png", np.full((1, 8, 8), 10 * k, np.uint8))
        write_mask(root / "masks" / f"s{k}.png", np.eye(8, dtype=np.uint8))
    return root


def test_table_names_every_layout_once_and_the_config_accepts_exactly_those() -> None:
    assert list(LAYOUTS) == ["folders", "isbi2012", "dsb2018", "decathlon", "synthetic"]
    for name in LAYOUTS:
        assert DataConfig(layout=name).layout == name
    with pytest.raises(ConfigError, match="unknown layout 'nifti'"):
        layout("nifti")


def test_open_dataset_reads_each_row(tmp_path) -> None:
    ds = open_dataset(DataConfig(root=str(folders(tmp_path)), layout="folders"), spatial_dims=2, classes=1)
    assert ds.ids == [f"s{k}" for k in range(5)]
    assert ds[0]["mask"].shape == (1, 8, 8)
    synthetic = open_dataset(DataConfig(layout="synthetic", synthetic_images=3, synthetic_size=32), 2, 1)
    assert len(synthetic) == 3
    assert synthetic[0]["image"].shape == (1, 32, 32)
    with pytest.raises(ConfigError, match="data.root is not set"):
        open_dataset(DataConfig(layout="folders"), 2, 1)
    with pytest.raises(DataError, match=r"nowhere: no such folder"):
        open_dataset(DataConfig(root=str(tmp_path / "nowhere"), layout="isbi2012"), 2, 1)


def test_looks_like_recognises_only_its_own_layout(tmp_path) -> None:
    plain = folders(tmp_path / "plain")
    assert LAYOUTS["folders"].looks_like(plain)
    assert not LAYOUTS["decathlon"].looks_like(plain)
    (tmp_path / "msd" / "imagesTr").mkdir(parents=True)
    (tmp_path / "msd" / "labelsTr").mkdir()
    assert LAYOUTS["decathlon"].looks_like(tmp_path / "msd")
    assert not LAYOUTS["folders"].looks_like(tmp_path / "msd")


def test_auto_split_is_the_layouts_own() -> None:
    ids = [f"{k:02d}" for k in range(10)]
    block = split_indices(DataConfig(layout="isbi2012", split="auto", val_fraction=0.3), ids, seed=0)
    assert np.diff(block.val).tolist() == [1, 1]  # serial sections: one contiguous block
    assert split_indices(DataConfig(layout="isbi2012", split="block", val_fraction=0.3), ids, 0) == block
    shuffled = [split_indices(DataConfig(layout="dsb2018", val_fraction=0.3), ids, seed=s).val for s in range(6)]
    assert any(np.diff(v).tolist() != [1, 1] for v in shuffled)  # independent images: at random
    assert split_indices(DataConfig(layout="dsb2018", val_fraction=0.3), ids, 0) == split_indices(
        DataConfig(layout="dsb2018", split="random", val_fraction=0.3), ids, 0
    )


def test_kfold_folds_are_contiguous_for_serial_sections_and_cover_everything() -> None:
    ids = [str(k) for k in range(10)]
    vals = [split_indices(DataConfig(layout="folders", split="kfold", folds=5, fold=f), ids, 0).val for f in range(5)]
    assert sorted(i for v in vals for i in v) == list(range(10))
    assert all(np.diff(v).tolist() == [1] for v in vals)
    with pytest.raises(ConfigError, match=r"data.fold must be in 0..4, got 5"):
        split_indices(DataConfig(split="kfold", folds=5, fold=5), ids, 0)


def test_explicit_validation_ids_win_and_unknown_ones_are_named() -> None:
    ids = ["a", "b", "c", "d"]
    split = split_indices(DataConfig(val_ids=("d", "b")), ids, 0)
    assert (split.train, split.val) == ([0, 2], [1, 3])
    with pytest.raises(ConfigError, match=r"data.val_ids names images that do not exist: \['z'\]"):
        split_indices(DataConfig(val_ids=("z",)), ids, 0)
