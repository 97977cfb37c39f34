"""Every mode's probabilities for each flip of one whole image: what evaluation averages over flips, and what the
end-of-training check (:mod:`unetpp.engine.tta`) compares with the single pass."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from torch import Tensor

from ..models import NestedUNet, heads_and_ensemble
from ..utils.padding import pad_to_multiple
from .window import flip_axes


def probabilities_per_flip(
    model: NestedUNet, image: Tensor, ensemble_heads: Sequence[int] | None = None
) -> Iterator[dict[str, Tensor]]:
    """For each flip of the spatial axes of a ``(1, C, *spatial)`` image, the identity first, the probabilities of
    every head and ensemble (:func:`unetpp.models.heads_and_ensemble`), flipped back; lazily, one pass a flip."""
    padded, crop = pad_to_multiple(image, 2**model.depth)
    for dims in flip_axes(model.spatial_dims):
        logits = [h.flip(dims)[crop].float() for h in model(padded.flip(dims))]  # float32 under bf16 autocast too
        yield heads_and_ensemble(logits, model.spec.heads, ensemble_heads)
