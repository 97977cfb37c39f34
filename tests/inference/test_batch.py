"""predict_files: inputs found, every output planned before work, masks in each input's format, errors name files."""

from __future__ import annotations

import numpy as np
import pytest

import unetpp
from unetpp import CheckpointError, ConfigError, DataError
from unetpp.inference import PredictOptions, find_inputs, match_channels, predict_files


def _png(path, rng, size=(37, 50)) -> None:
    from unetpp.data.writers import write_image

    write_image(path, rng.integers(0, 255, size=(1, *size), dtype=np.uint8))


def test_predict_files_writes_png_masks_and_overlays_and_never_overwrites(tiny, tmp_path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        _png(tmp_path / "in" / f"{name}.png", rng)
    out = tmp_path / "out"
    written = predict_files(
        tiny(), tmp_path / "in", out, PredictOptions(roi_size=16), probabilities=True, progress=False
    )
    assert [w.input.name for w in written] == ["a.png", "b.png"]
    for w in written:
        assert w.mask == out / f"{w.input.stem}_mask.png"
        mask = np.array(Image.open(w.mask))
        assert mask.shape == (37, 50)
        assert set(np.unique(mask)) <= {0, 255}
        assert np.array(Image.open(w.overlay)).shape == (37, 50, 3)
        assert np.load(w.probabilities).shape == (37, 50)  # one class: the foreground probability
    with pytest.raises(DataError, match=r"a_mask.png: output exists \(for input a.png\); pass --overwrite"):
        predict_files(tiny(), tmp_path / "in", out, progress=False)
    again = predict_files(tiny(), str(tmp_path / "in" / "*.png"), out, overwrite=True, overlay=False, progress=False)
    assert len(again) == 2
    assert again[0].overlay is None


def test_predict_files_keeps_the_nifti_affine_and_spacing(tiny, tmp_path) -> None:
    nib = pytest.importorskip("nibabel")
    affine = np.array([[0.8, 0, 0, -10.0], [0, 1.2, 0, 5.0], [0, 0, 2.5, 30.0], [0, 0, 0, 1]])
    volume = np.random.default_rng(0).normal(size=(13, 17, 11)).astype(np.float32)
    nib.save(nib.Nifti1Image(volume, affine), tmp_path / "case.nii.gz")
    model = tiny(spatial_dims=3, classes=2)
    (w,) = predict_files(
        model, [tmp_path / "case.nii.gz"], tmp_path / "out", PredictOptions(roi_size=8), probabilities=True
    )
    assert w.mask.name == "case_mask.nii.gz"
    assert w.overlay is None
    mask = nib.load(w.mask)
    assert mask.shape == volume.shape
    np.testing.assert_allclose(mask.affine, affine)
    np.testing.assert_allclose(mask.header.get_zooms(), (0.8, 1.2, 2.5))
    assert set(np.unique(np.asarray(mask.dataobj))) <= {0, 1}
    prob = nib.load(w.probabilities)
    np.testing.assert_allclose(prob.affine, affine)
    assert prob.shape == (*volume.shape, 2)


@pytest.mark.parametrize("ext", [".tif", ".npy"])
def test_predict_files_writes_the_input_format(tiny, tmp_path, ext) -> None:
    from unetpp.data.io import read_mask
    from unetpp.data.writers import write_image

    write_image(tmp_path / f"x{ext}", np.random.default_rng(0).normal(size=(1, 21, 18)).astype(np.float32))
    (w,) = predict_files(tiny(), tmp_path / f"x{ext}", tmp_path / "out", progress=False)
    assert w.mask.name == f"x_mask{ext}"
    assert read_mask(w.mask, spatial_dims=2).shape == (21, 18)


def test_predict_files_from_a_checkpoint_names_the_file_on_errors(tiny, tmp_path) -> None:
    rng = np.random.default_rng(0)
    _png(tmp_path / "in" / "a.png", rng)
    ckpt = unetpp.save(tiny(), tmp_path / "model.pt")
    (w,) = predict_files(ckpt, tmp_path / "in", tmp_path / "out", PredictOptions(head=1), progress=False)
    assert w.mask.is_file()
    with pytest.raises(ConfigError, match=r"model.pt: head=5 does not exist"):
        predict_files(ckpt, tmp_path / "in", tmp_path / "out2", PredictOptions(head=5))
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt.pt"):
        predict_files(corrupt, tmp_path / "in", tmp_path / "out3")
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(DataError, match=r"file/out: output folder cannot be written"):
        predict_files(ckpt, tmp_path / "in", blocker / "out")
    with pytest.raises(DataError, match="nothing.png: no such file"):
        predict_files(ckpt, [tmp_path / "nothing.png"], tmp_path / "out4")
    np.save(tmp_path / "five.npy", np.zeros((5, 16, 16), np.float32))
    with pytest.raises(DataError, match=r"five.npy: image has 5 channel\(s\) but the model takes 1"):
        predict_files(ckpt, [tmp_path / "five.npy"], tmp_path / "out5")
    with pytest.raises(ConfigError, match=r"threshold must be in \(0, 1\), got 1.0"):
        predict_files(ckpt, tmp_path / "in", tmp_path / "out6", threshold=1.0)
    assert not (tmp_path / "out6").exists()  # refused before anything was written


def test_two_inputs_with_one_output_name_are_refused_before_any_work(tiny, tmp_path) -> None:
    rng = np.random.default_rng(0)
    _png(tmp_path / "x" / "a.png", rng)
    _png(tmp_path / "y" / "a.png", rng)
    with pytest.raises(DataError, match=r"a.png: its output a_mask.png would also be written for .*x/a.png"):
        predict_files(tiny(), [tmp_path / "x", tmp_path / "y"], tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()  # refused before anything was made


def test_find_inputs(tmp_path) -> None:
    rng = np.random.default_rng(0)
    for name in ("b.png", "a.png", "a_mask.png"):
        _png(tmp_path / name, rng, (8, 8))
    (tmp_path / "notes.txt").write_text("")
    assert [p.name for p in find_inputs(tmp_path)] == ["a.png", "a_mask.png", "b.png"]
    assert [p.name for p in find_inputs(tmp_path, exclude_outputs_in=tmp_path)] == ["a.png", "a_mask.png", "b.png"]
    (tmp_path / ".unetpp-predict.json").write_text('{"settings": null, "outputs": ["a_mask.png"]}')
    assert [p.name for p in find_inputs(tmp_path, exclude_outputs_in=tmp_path)] == ["a.png", "b.png"]  # ours, listed
    assert [p.name for p in find_inputs(str(tmp_path / "[ab].png"))] == ["a.png", "b.png"]
    with pytest.raises(DataError, match=r"\*.nii.gz: pattern matches no files"):
        find_inputs(str(tmp_path / "*.nii.gz"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: folder has no readable images"):
        find_inputs(tmp_path / "empty")


def test_match_channels() -> None:
    rgba = np.random.default_rng(0).integers(0, 255, size=(4, 5, 6)).astype(np.float32)
    assert match_channels(rgba, 3, "x.png").shape == (3, 5, 6)  # alpha dropped
    assert match_channels(rgba, 1, "x.png").shape == (1, 5, 6)  # to grey
    assert match_channels(rgba[:1], 3, "x.png").shape == (3, 5, 6)  # grey to RGB
    assert match_channels(rgba, 4, "x.png") is rgba
    with pytest.raises(DataError, match=r"x.png: image has 4 channel\(s\) but the model takes 2"):
        match_channels(rgba, 2, "x.png")
