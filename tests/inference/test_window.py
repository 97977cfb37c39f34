"""The sliding window: exact where it should be, seamless, MONAI's positions, odd sizes, flip TTA."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from unetpp import GridSpec, ensemble, predict
from unetpp.evaluation.semantic import probabilities_per_mode
from unetpp.inference.window import auto_window, importance_map, sliding_window, window_starts, with_flips


def full_pass(model: nn.Module, x: Tensor, head: int | None = None) -> Tensor:
    with torch.inference_mode():
        return ensemble(model(x, head=head))


class Pointwise(nn.Module):
    """A 1x1 convolution: commutes with every flip and every translation, so TTA and tiling must not change it."""

    def __init__(self, spatial_dims: int = 2) -> None:
        super().__init__()
        self.spec = GridSpec((4, 8), "dense", frozenset({(0, 1)}), (1,))
        self.in_channels, self.classes, self.spatial_dims = 1, 2, spatial_dims
        self.conv = (nn.Conv2d if spatial_dims == 2 else nn.Conv3d)(1, 2, 1)

    def forward(self, x: Tensor, head: int | None = None) -> list[Tensor]:
        return [self.conv(x)]


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("blend", ["gaussian", "constant"])
def test_one_window_equals_a_single_pass(tiny, spatial_dims, blend) -> None:
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
def test_odd_sizes_are_padded_and_cropped_back(tiny, spatial_dims, size) -> None:
    model = tiny(spatial_dims)
    x = torch.randn(1, *size)
    for roi in (None, 8, 16):
        assert predict(model, x, roi_size=roi).shape == (1, *size)
    # no window: pad to a multiple of 4 (2^depth), one pass, crop
    padded = torch.nn.functional.pad(x[None], [p for s in reversed(size) for p in (0, -s % 4)])
    want = full_pass(model, padded)[(0, slice(None), *(slice(0, s) for s in size))]
    torch.testing.assert_close(predict(model, x), want, rtol=1e-5, atol=1e-6)


def test_a_predict_fn_that_changes_the_shape_is_refused() -> None:
    from unetpp import InputShapeError

    with pytest.raises(InputShapeError, match=r"predict_fn returned shape \(1, 2, 4, 4\)"):
        sliding_window(lambda w: torch.zeros(1, 2, 4, 4), torch.randn(1, 1, 8, 8), 8)


# --------------------------------------------------------------------------------------------- TTA


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_tta_changes_nothing_for_a_flip_equivariant_model(spatial_dims) -> None:
    model = Pointwise(spatial_dims)
    x = torch.randn(1, *(12,) * spatial_dims)
    torch.testing.assert_close(predict(model, x, tta=True), predict(model, x), rtol=1e-5, atol=1e-6)


def test_tta_is_the_mean_over_flips_and_composes_with_the_window(tiny) -> None:
    model = tiny()
    x = torch.randn(1, 1, 16, 16)
    flips = [(), (2,), (3,), (2, 3)]
    want = torch.stack([full_pass(model, x.flip(f)).flip(f) for f in flips]).mean(0)
    torch.testing.assert_close(predict(model, x, tta=True), want, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(want, full_pass(model, x), atol=1e-4)  # this model is not flip-invariant
    tiled = predict(model, torch.randn(1, 1, 40, 28), roi_size=16, tta=True)
    assert tiled.shape == (1, 1, 40, 28)
    assert bool(((tiled >= 0) & (tiled <= 1)).all())


def test_evaluation_with_tta_scores_what_predict_with_tta_delivers(tiny) -> None:
    model = tiny()
    x = torch.randn(1, 1, 16, 16)
    modes = probabilities_per_mode(model, x, tta=True)
    torch.testing.assert_close(modes["ensemble"], predict(model, x, tta=True), rtol=1e-5, atol=1e-6)
    mirrored = probabilities_per_mode(model, x.flip(3), tta=True)  # the mean over flips commutes with a flip
    for mode, probs in modes.items():
        torch.testing.assert_close(mirrored[mode], probs.flip(3), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(probabilities_per_mode(model, x)["ensemble"], modes["ensemble"], atol=1e-4)


def test_with_flips_on_tensors_alone() -> None:
    x = torch.arange(2 * 3 * 5, dtype=torch.float32).reshape(1, 1, 2, 3, 5)
    corner = with_flips(lambda t: t[..., :1, :1, :1].expand_as(t).clone(), 3)(x)  # not flip-equivariant
    corners = [x[..., a, b, c] for a in (0, -1) for b in (0, -1) for c in (0, -1)]
    torch.testing.assert_close(corner[..., 0, 0, 0], torch.stack(corners).mean(0))
