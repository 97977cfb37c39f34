"""Prediction: sliding window (exact where it should be, seamless), flip TTA, modes, bf16, files on disk."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import unetpp
from unetpp import CheckpointError, ConfigError, DataError, GridSpec, InputShapeError, build_model
from unetpp.models.inference import fuse_batch_norm
from unetpp.predict import (
    Predictor,
    auto_window,
    find_inputs,
    head_probabilities,
    importance_map,
    predict,
    predict_files,
    sliding_window,
    window_starts,
)

TINY = (4, 8, 16)


def tiny(spatial_dims: int = 2, classes: int = 1, **kw) -> nn.Module:
    """A depth-2 UNet++ whose batch norms hold non-trivial statistics (so that folding them is tested)."""
    model = build_model("unet++", depth=2, widths=TINY, spatial_dims=spatial_dims, classes=classes, **kw)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def full_pass(model: nn.Module, x: Tensor, head: int | None = None) -> Tensor:
    with torch.inference_mode():
        return head_probabilities(model(x, head=head))


class Pointwise(nn.Module):
    """A 1x1 convolution: commutes with every flip and every translation, so TTA and tiling must not change it."""

    def __init__(self, spatial_dims: int = 2) -> None:
        super().__init__()
        self.spec = GridSpec((4, 8), "dense", frozenset({(0, 1)}), (1,))
        self.in_channels, self.classes, self.spatial_dims = 1, 2, spatial_dims
        self.conv = (nn.Conv2d if spatial_dims == 2 else nn.Conv3d)(1, 2, 1)

    def forward(self, x: Tensor, head: int | None = None) -> list[Tensor]:
        return [self.conv(x)]


# --------------------------------------------------------------------------------------------- window


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("blend", ["gaussian", "constant"])
def test_one_window_equals_a_single_pass(spatial_dims, blend) -> None:
    model = tiny(spatial_dims)
    x = torch.randn(2, 1, *(16,) * spatial_dims)
    want = full_pass(model, x)
    got = predict(model, x, roi_size=16, blend=blend)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    bigger = predict(model, x, roi_size=64, blend=blend)  # a window larger than the image shrinks to it
    torch.testing.assert_close(bigger, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_seamless_on_a_constant_response(spatial_dims) -> None:
    x = torch.randn(1, 1, *((37, 29) if spatial_dims == 2 else (21, 19, 23)))
    out = sliding_window(lambda w: torch.full((w.shape[0], 2, *w.shape[2:]), 0.7), x, 8, overlap=0.5)
    assert out.shape == (1, 2, *x.shape[2:])
    torch.testing.assert_close(out, torch.full_like(out, 0.7), rtol=0, atol=1e-6)


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5, 0.8])
def test_tiling_a_translation_equivariant_model_leaves_no_seams(spatial_dims, overlap) -> None:
    model = Pointwise(spatial_dims)
    x = torch.randn(2, 1, *((45, 38) if spatial_dims == 2 else (19, 22, 17)))
    got = predict(model, x, roi_size=8, overlap=overlap, sw_batch_size=3)
    torch.testing.assert_close(got, full_pass(model, x), rtol=1e-5, atol=1e-6)


def test_window_positions_cover_the_image_as_monai_does() -> None:
    assert window_starts(100, 32, 0.5) == [0, 16, 32, 48, 64, 68]
    assert window_starts(32, 32, 0.5) == [0]
    assert window_starts(40, 32, 0.0) == [0, 8]


def test_default_window_bounds_memory_on_large_inputs() -> None:
    assert auto_window((1024, 1024), 16) is None  # one pass
    assert auto_window((1025, 1024), 16) == (512, 512)
    assert auto_window((128, 128, 128), 16) is None
    assert auto_window((129, 128, 128), 32) == (96, 96, 96)
    assert auto_window((200, 200, 200), 64) == (128, 128, 128)  # rounded up to a size the model takes


def test_importance_map_is_cached_centred_and_positive() -> None:
    w = importance_map((16, 12))
    assert w is importance_map((16, 12))
    assert w.shape == (16, 12)
    assert float(w.max()) == pytest.approx(1.0, abs=1e-3)
    assert float(w.min()) >= 1e-3
    torch.testing.assert_close(w, w.flip(0).flip(1))
    assert torch.equal(importance_map((4, 4), "constant"), torch.ones(4, 4))


@pytest.mark.parametrize(("spatial_dims", "size"), [(2, (97, 61)), (3, (19, 13, 22))])
def test_odd_sizes_are_padded_and_cropped_back(spatial_dims, size) -> None:
    model = tiny(spatial_dims)
    x = torch.randn(1, *size)
    for roi in (None, 8, 16):
        assert predict(model, x, roi_size=roi).shape == (1, *size)
    # no window: pad to a multiple of 4 (2^depth), one pass, crop
    padded = torch.nn.functional.pad(x[None], [p for s in reversed(size) for p in (0, -s % 4)])
    want = full_pass(model, padded)[(0, slice(None), *(slice(0, s) for s in size))]
    torch.testing.assert_close(predict(model, x), want, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------- TTA


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_tta_changes_nothing_for_a_flip_equivariant_model(spatial_dims) -> None:
    model = Pointwise(spatial_dims)
    x = torch.randn(1, *(12,) * spatial_dims)
    torch.testing.assert_close(predict(model, x, tta=True), predict(model, x), rtol=1e-5, atol=1e-6)


def test_tta_is_the_mean_over_flips_and_composes_with_the_window() -> None:
    model = tiny()
    x = torch.randn(1, 1, 16, 16)
    flips = [(), (2,), (3,), (2, 3)]
    want = torch.stack([full_pass(model, x.flip(f)).flip(f) for f in flips]).mean(0)
    torch.testing.assert_close(predict(model, x, tta=True), want, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(want, full_pass(model, x), atol=1e-4)  # this model is not flip-invariant
    tiled = predict(model, torch.randn(1, 1, 40, 28), roi_size=16, tta=True)
    assert tiled.shape == (1, 1, 40, 28)
    assert bool(((tiled >= 0) & (tiled <= 1)).all())


# --------------------------------------------------------------------------------------------- modes


def test_modes_ensemble_head_and_pruned() -> None:
    model = tiny(classes=3)
    x = torch.randn(1, 1, 16, 16)
    logits = model(x)
    ensemble = torch.stack([y.softmax(1) for y in logits]).mean(0)
    torch.testing.assert_close(predict(model, x[0])[None], ensemble, rtol=1e-4, atol=1e-5)
    head1 = predict(model, x, head=1)
    torch.testing.assert_close(head1, logits[0].softmax(1), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(predict(model, x, "select:1"), head1)
    torch.testing.assert_close(predict(unetpp.prune(model, 1), x), head1, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(head1.sum(1), torch.ones(1, 16, 16))


def test_predict_leaves_the_model_alone_and_takes_numpy() -> None:
    model = tiny().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = np.random.default_rng(0).normal(size=(1, 20, 12)).astype(np.float32)
    out = predict(model, x)
    assert isinstance(out, Tensor)
    assert out.shape == (1, 20, 12)
    assert out.dtype == torch.float32
    assert model.training
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    uint8 = predict(model, (x * 50 + 100).clip(0, 255).astype(np.uint8))
    assert uint8.shape == (1, 20, 12)


def test_bfloat16_is_close_to_float32() -> None:
    model = tiny()
    x = torch.randn(2, 1, 32, 32)
    f32, bf16 = predict(model, x), predict(model, x, precision="bfloat16")
    assert bf16.dtype == torch.float32
    torch.testing.assert_close(bf16, f32, rtol=0, atol=0.03)
    torch.testing.assert_close(full_pass(fuse_batch_norm(model), x), full_pass(model, x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"head": 7}, ConfigError, r"head=7 does not exist; the model has heads \[1, 2\]"),
        ({"mode": "fast"}, ConfigError, "mode must be 'ensemble' or 'select:<depth>'"),
        ({"mode": "select:1", "head": 2}, ConfigError, "disagree"),
        ({"roi_size": 10}, ConfigError, r"not divisible by 4.*\(8, 8\)"),
        ({"roi_size": (8, 8, 8)}, ConfigError, "2 positive integers"),
        ({"overlap": 1.0}, ConfigError, r"overlap must be in \[0, 1\), got 1.0"),
        ({"blend": "max"}, ConfigError, "blend must be one of"),
        ({"sw_batch_size": 0}, ConfigError, "sw_batch_size"),
        ({"precision": "float16"}, ConfigError, "precision must be one of"),
    ],
)
def test_bad_arguments(kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        predict(tiny(), torch.randn(1, 16, 16), **kwargs)


@pytest.mark.parametrize(
    ("shape", "match"), [((2, 16, 16), r"takes 1 channel\(s\), got 2"), ((16, 16), r"got shape \(16, 16\)")]
)
def test_bad_images(shape, match) -> None:
    with pytest.raises(InputShapeError, match=match):
        predict(tiny(), torch.randn(shape))


# --------------------------------------------------------------------------------------------- files


def _png(path, rng, size=(37, 50)) -> None:
    from unetpp.data.io import write_image

    write_image(path, rng.integers(0, 255, size=(1, *size), dtype=np.uint8))


def test_predict_files_writes_png_masks_and_overlays_and_never_overwrites(tmp_path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        _png(tmp_path / "in" / f"{name}.png", rng)
    out = tmp_path / "out"
    written = predict_files(tiny(), tmp_path / "in", out, roi_size=16, probabilities=True, progress=False)
    assert [w.input.name for w in written] == ["a.png", "b.png"]
    for w in written:
        assert w.mask == out / f"{w.input.stem}_mask.png"
        mask = np.array(Image.open(w.mask))
        assert mask.shape == (37, 50)
        assert set(np.unique(mask)) <= {0, 255}
        assert np.array(Image.open(w.overlay)).shape == (37, 50, 3)
        assert np.load(w.probabilities).shape == (37, 50)  # one class: the foreground probability
    with pytest.raises(DataError, match=r"a_mask.png: output exists \(for input a.png\)"):
        predict_files(tiny(), tmp_path / "in", out, progress=False)
    again = predict_files(tiny(), str(tmp_path / "in" / "*.png"), out, overwrite=True, overlay=False, progress=False)
    assert len(again) == 2
    assert again[0].overlay is None


def test_predict_files_keeps_the_nifti_affine_and_spacing(tmp_path) -> None:
    nib = pytest.importorskip("nibabel")
    affine = np.array([[0.8, 0, 0, -10.0], [0, 1.2, 0, 5.0], [0, 0, 2.5, 30.0], [0, 0, 0, 1]])
    volume = np.random.default_rng(0).normal(size=(13, 17, 11)).astype(np.float32)
    nib.save(nib.Nifti1Image(volume, affine), tmp_path / "case.nii.gz")
    model = tiny(spatial_dims=3, classes=2)
    (w,) = predict_files(model, [tmp_path / "case.nii.gz"], tmp_path / "out", roi_size=8, probabilities=True)
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
def test_predict_files_writes_the_input_format(tmp_path, ext) -> None:
    from unetpp.data.io import read_mask, write_image

    write_image(tmp_path / f"x{ext}", np.random.default_rng(0).normal(size=(1, 21, 18)).astype(np.float32))
    (w,) = predict_files(tiny(), tmp_path / f"x{ext}", tmp_path / "out", progress=False)
    assert w.mask.name == f"x_mask{ext}"
    assert read_mask(w.mask, spatial_dims=2).shape == (21, 18)


def test_predict_files_from_a_checkpoint_names_the_file_on_errors(tmp_path) -> None:
    rng = np.random.default_rng(0)
    _png(tmp_path / "in" / "a.png", rng)
    ckpt = unetpp.save(tiny(), tmp_path / "model.pt")
    (w,) = predict_files(ckpt, tmp_path / "in", tmp_path / "out", head=1, progress=False)
    assert w.mask.is_file()
    with pytest.raises(ConfigError, match=r"model.pt: head=5 does not exist"):
        predict_files(ckpt, tmp_path / "in", tmp_path / "out2", head=5)
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


def test_find_inputs(tmp_path) -> None:
    rng = np.random.default_rng(0)
    for name in ("b.png", "a.png", "a_mask.png"):
        _png(tmp_path / name, rng, (8, 8))
    (tmp_path / "notes.txt").write_text("")
    assert [p.name for p in find_inputs(tmp_path)] == ["a.png", "a_mask.png", "b.png"]
    assert [p.name for p in find_inputs(tmp_path, exclude_outputs_in=tmp_path)] == ["a.png", "b.png"]
    assert [p.name for p in find_inputs(str(tmp_path / "[ab].png"))] == ["a.png", "b.png"]
    with pytest.raises(DataError, match=r"\*.nii.gz: pattern matches no files"):
        find_inputs(str(tmp_path / "*.nii.gz"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: folder has no readable images"):
        find_inputs(tmp_path / "empty")


def test_predictor_is_reusable_and_validates_once() -> None:
    predictor = Predictor(tiny(), roi_size=8, tta=True)
    assert predictor(torch.randn(1, 12, 12)).shape == (1, 12, 12)
    assert predictor(torch.randn(3, 1, 9, 20)).shape == (3, 1, 9, 20)


def test_import_is_light() -> None:
    import subprocess
    import sys

    heavy = ("unetpp.data", "unetpp.engine", "onnx", "onnxruntime", "safetensors", "PIL", "nibabel", "lightning")
    code = f"import sys, unetpp.predict, unetpp.export, unetpp.bench; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
