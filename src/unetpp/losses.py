"""Training losses of UNet++: soft Dice, the hybrid BCE/CE + Dice loss, and deep supervision.

Zhou, Rahman Siddiquee, Tajbakhsh and Liang, "UNet++: Redesigning Skip Connections to Exploit
Multiscale Features in Image Segmentation", IEEE TMI 39(6), 2020, doi:10.1109/TMI.2019.2959609
(arXiv:1912.05074), Section III-C: every supervised head X^{0,j} gets a hybrid of pixel-wise
cross-entropy and soft Dice, and the heads' losses are summed.

All losses take *logits* ``(B, C, *spatial)`` and apply the activation themselves: sigmoid when
``C == 1`` (binary), softmax over channels when ``C > 1``. They reduce over ``range(2, ndim)``, so
2D and 3D share one code path. Targets are accepted as

- a float (or 0/1 integer) tensor of the logits' shape: a binary mask for ``C == 1``, one-hot or
  class probabilities for ``C > 1``; for ``C == 1`` the channel axis may be left out;
- for ``C > 1``, a label map of class ids ``(B, 1, *spatial)`` or ``(B, *spatial)``.

UNet++ heads are full-resolution, so targets are never resized: a shape mismatch is an error.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import ConfigError, InputShapeError

__all__ = ["DeepSupervisionLoss", "HybridLoss", "SoftDiceLoss", "prepare_target"]


class SoftDiceLoss(nn.Module):
    """``1 - soft Dice`` between the predicted probabilities and the target, per image and class.

    Dice is computed per image and per class over the spatial axes (or over the whole batch with
    ``batch_dice=True``), smoothed, then averaged, so the loss lies in [0, 1] and a perfect
    prediction gives ≈ 0. An image where a class is absent and not predicted scores Dice 1 thanks
    to ``smooth`` (the same convention as :func:`unetpp.metrics.dice`).

    Args:
        smooth: added to numerator and denominator; keeps empty classes at Dice 1 and the
            gradient finite. The authors' Keras code uses 1.0 with batch Dice; a small value
            keeps the per-image Dice of small objects close to the true Dice.
        batch_dice: pool intersections and sums over the batch before dividing, as the authors'
            Keras code does, instead of one Dice per image. Per image, an image without
            foreground scores Dice ≈ 1 only while its predicted mass stays well below ``smooth``,
            so data with many empty images or tiny objects trains more steadily pooled.
        include_background: keep channel 0 when ``C > 1``. Ignored for ``C == 1``, whose single
            channel is the foreground.

    Raises:
        InputShapeError: the target's shape fits none of the accepted layouts (both shapes are
            in the message).
        ConfigError: a label map holds a class id outside ``0..C-1``, or a binary target a value
            outside [0, 1].

    Example:
        >>> loss = SoftDiceLoss()
        >>> loss(torch.zeros(2, 3, 8, 8), torch.randint(0, 3, (2, 1, 8, 8))).shape
        torch.Size([])
    """

    def __init__(self, smooth: float = 1e-5, batch_dice: bool = False, include_background: bool = True) -> None:
        super().__init__()
        if not (math.isfinite(smooth) and smooth >= 0):
            raise ConfigError(f"smooth must be a finite number >= 0, got {smooth!r}")
        self.smooth = float(smooth)
        self.batch_dice = batch_dice
        self.include_background = include_background

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return self.from_prepared(logits, *prepare_target(logits, target))

    def from_prepared(self, logits: Tensor, dense: Tensor, labels: Tensor | None = None) -> Tensor:
        """The loss for a target already prepared by :func:`prepare_target` (no checks, no conversion)."""
        return self.from_dense(logits, dense)

    def from_dense(self, logits: Tensor, dense: Tensor) -> Tensor:
        """The loss for a target already in the logits' layout (skips target checks)."""
        probs = torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)
        if not self.include_background and logits.shape[1] > 1:
            probs, dense = probs[:, 1:], dense[:, 1:]
        axes = tuple(range(2, logits.ndim))
        if self.batch_dice:
            axes = (0, *axes)
        intersection = (probs * dense).sum(axes)  # (B, C), or (C,) with batch_dice
        denominator = probs.sum(axes) + dense.sum(axes)
        dice = (2 * intersection + self.smooth) / (denominator + self.smooth).clamp_min(1e-8)
        return 1 - dice.mean()

    def extra_repr(self) -> str:
        return f"smooth={self.smooth}, batch_dice={self.batch_dice}, include_background={self.include_background}"


class HybridLoss(nn.Module):
    """Cross-entropy plus soft Dice: the per-head loss of UNet++.

    ``loss = bce_weight * CE + dice_weight * (1 - Dice)``, where CE is binary cross-entropy with
    logits for one class and softmax cross-entropy for several. Using ``1 - Dice`` rather than
    ``-Dice`` only shifts the loss by a constant (same gradients) and keeps it ≥ 0.

    Weights: the TMI paper's loss adds the two terms with equal weight (``bce_weight=1.0``). The
    authors' released Keras code (``bce_dice_loss`` in ``keras/helper_functions.py``), which
    produced the published numbers, uses ``0.5 * BCE - Dice``, and so does the earlier DLMIA 2018
    version of the paper. The default follows that code, because reproducing the published
    results is what this package promises; pass ``bce_weight=1.0`` for the equation as printed
    in TMI.

    Args:
        bce_weight: weight of the cross-entropy term.
        dice_weight: weight of the ``1 - Dice`` term.
        smooth: Dice smoothing (see :class:`SoftDiceLoss`).
        batch_dice: pool Dice over the batch (see :class:`SoftDiceLoss`).
        include_background: keep channel 0 in the Dice term when ``C > 1``; cross-entropy always
            uses every class.

    Raises:
        ConfigError: a weight is negative or not finite, or both are zero; at call, a label map
            holds a class id outside ``0..C-1`` or a binary target a value outside [0, 1].
        InputShapeError: at call, the target's shape fits none of the accepted layouts.

    Example:
        >>> loss = HybridLoss()
        >>> logits = torch.zeros(2, 1, 8, 8, requires_grad=True)
        >>> loss(logits, torch.ones(2, 1, 8, 8)).backward()
    """

    def __init__(
        self,
        bce_weight: float = 0.5,
        dice_weight: float = 1.0,
        *,
        smooth: float = 1e-5,
        batch_dice: bool = False,
        include_background: bool = True,
    ) -> None:
        super().__init__()
        for name, value in (("bce_weight", bce_weight), ("dice_weight", dice_weight)):
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")
        if bce_weight == 0 and dice_weight == 0:
            raise ConfigError("bce_weight and dice_weight are both 0; at least one must be positive")
        self.bce_weight = float(bce_weight)
        self.dice_weight = float(dice_weight)
        self.dice = SoftDiceLoss(smooth, batch_dice, include_background)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return self.from_prepared(logits, *prepare_target(logits, target))

    def from_prepared(self, logits: Tensor, dense: Tensor, labels: Tensor | None = None) -> Tensor:
        """The loss for a target already prepared by :func:`prepare_target` (no checks, no conversion)."""
        loss = logits.new_zeros(())
        if self.bce_weight:
            if logits.shape[1] == 1:
                ce = F.binary_cross_entropy_with_logits(logits, dense)
            else:  # class ids are cheaper than a one-hot target; soft targets need the dense form
                ce = F.cross_entropy(logits, labels if labels is not None else dense)
            loss = loss + self.bce_weight * ce
        if self.dice_weight:
            loss = loss + self.dice_weight * self.dice.from_dense(logits, dense)
        return loss

    def extra_repr(self) -> str:
        return f"bce_weight={self.bce_weight}, dice_weight={self.dice_weight}"


class DeepSupervisionLoss(nn.Module):
    """Weighted sum of one loss over the logits of every supervised head.

    ``total = sum_j weights[j] * loss(heads[j], target)``, with the heads in the model's order
    (X^{0,j}, j ascending). The paper uses weight 1 for every head; weights are not normalised,
    so the total grows with the number of heads. Heads of weight 0 are not evaluated in
    :meth:`forward` and receive no gradient.

    The paper's "embedded vs isolated" training (Fig. 6) is only a choice of weights. For a
    depth-4 UNet++ with four heads:

    >>> embedded = DeepSupervisionLoss(HybridLoss(), [1, 1, 1, 1])  # all depths co-learned
    >>> isolated_2 = DeepSupervisionLoss(HybridLoss(), [0, 1, 0, 0])  # the depth-2 sub-network alone

    With one non-zero weight at depth d, only the nodes head d depends on get gradients, the
    same gradients the pruned network ``unetpp.prune(model, d)`` would get on its own (for U-Net^e
    that network is U-Net L^d). Pruning first and using weights ``[1]`` is cheaper still.

    Args:
        loss: the per-head loss, e.g. :class:`HybridLoss`; called as ``loss(logits, target)``.
        weights: one weight per head, ≥ 0, at least one non-zero.

    Raises:
        ConfigError: weights are empty, negative, not finite, or all zero; at call, the number of
            heads differs from the number of weights (both are in the message).

    Example:
        >>> ds = DeepSupervisionLoss(HybridLoss(), [1.0, 1.0])
        >>> heads = [torch.zeros(2, 1, 8, 8), torch.zeros(2, 1, 8, 8)]
        >>> total, per_head = ds.per_head(heads, torch.ones(2, 1, 8, 8))
        >>> per_head.shape
        torch.Size([2])
    """

    def __init__(self, loss: nn.Module, weights: Sequence[float]) -> None:
        super().__init__()
        weights = tuple(float(w) for w in weights)
        if not weights:
            raise ConfigError("weights is empty; give one weight per head, e.g. [1, 1, 1, 1] for four heads")
        if any(not (math.isfinite(w) and w >= 0) for w in weights):
            raise ConfigError(f"weights must be finite numbers >= 0, got {list(weights)}")
        if not any(weights):
            raise ConfigError(f"weights are all zero ({list(weights)}); at least one head must have a positive weight")
        self.loss = loss
        self.weights = weights

    def forward(self, heads: Sequence[Tensor], target: Tensor) -> Tensor:
        one = self._per_head_loss(heads, target)
        # at least one weight is non-zero, so this is a tensor, never the start value 0
        return sum(w * one(logits) for w, logits in zip(self.weights, heads, strict=True) if w)

    def per_head(self, heads: Sequence[Tensor], target: Tensor) -> tuple[Tensor, Tensor]:
        """The total and every head's unweighted loss, for logging each head in one pass.

        Heads of weight 0 are evaluated without autograd: they are logged but not trained.

        Returns:
            ``(total, losses)``: the same total as :meth:`forward`, and a ``(len(heads),)`` tensor
            whose entry j is ``loss(heads[j], target)`` (detached).
        """
        one = self._per_head_loss(heads, target)
        terms = []
        for w, logits in zip(self.weights, heads, strict=True):
            if w:
                terms.append(one(logits))
            else:
                with torch.no_grad():
                    terms.append(one(logits))
        total = sum(w * t for w, t in zip(self.weights, terms, strict=True) if w)
        return total, torch.stack([t.detach() for t in terms])

    def _per_head_loss(self, heads: Sequence[Tensor], target: Tensor) -> Callable[[Tensor], Tensor]:
        """The loss of one head, with the target checked and converted once for all heads (they share its shape)."""
        self._check(heads)
        if not hasattr(self.loss, "from_prepared"):
            return lambda logits: self.loss(logits, target)
        dense, labels = prepare_target(heads[0], target)
        return lambda logits: self.loss.from_prepared(logits, dense.to(logits.dtype), labels)

    def _check(self, heads: Sequence[Tensor]) -> None:
        if isinstance(heads, Tensor):
            raise ConfigError(
                f"expected a list of head logits, got one tensor of shape {tuple(heads.shape)}; "
                "models in this package return a list, pass it whole"
            )
        if len(heads) != len(self.weights):
            raise ConfigError(
                f"got {len(heads)} head output(s) but {len(self.weights)} weight(s) {list(self.weights)}; "
                "give one weight per head (a model without deep supervision has one head)"
            )

    def extra_repr(self) -> str:
        return f"weights={list(self.weights)}"


def prepare_target(logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor | None]:
    """Target in the logits' layout (float), and the class-id map ``(B, *spatial)`` if one was given.

    Every head of a UNet++ has the same shape, so :class:`DeepSupervisionLoss` calls this once per step.

    Raises InputShapeError / ConfigError with both shapes or the offending value.
    """
    if logits.ndim < 3:
        raise InputShapeError(f"logits must be (B, C, *spatial), got shape {tuple(logits.shape)}")
    classes = logits.shape[1]
    spatial = (logits.shape[0], *logits.shape[2:])
    if target.shape == logits.shape:  # binary mask, one-hot or class probabilities
        if classes == 1:
            _check_binary(target)
        return target.to(logits.dtype), None
    if classes == 1 and target.shape == spatial:
        _check_binary(target)
        return target.unsqueeze(1).to(logits.dtype), None
    if classes > 1 and target.shape in (spatial, (spatial[0], 1, *spatial[1:])):
        labels = target.reshape(spatial)
        _check_labels(labels, classes)
        labels = labels.long()
        dense = torch.zeros_like(logits).scatter_(1, labels.unsqueeze(1), 1.0)
        return dense, labels
    if classes == 1:
        accepted = f"{tuple(logits.shape)} or {spatial}"
    else:
        accepted = f"{tuple(logits.shape)} (one-hot), or a label map {(spatial[0], 1, *spatial[1:])} or {spatial}"
    raise InputShapeError(
        f"target shape {tuple(target.shape)} does not match logits shape {tuple(logits.shape)}; expected {accepted}"
    )


def _check_binary(target: Tensor) -> None:
    if target.dtype == torch.bool:
        return
    lo, hi = torch.aminmax(target.detach())
    lo, hi = float(lo), float(hi)
    if lo < 0 or hi > 1:
        raise ConfigError(
            f"a binary target must hold values in [0, 1], got values in [{lo:g}, {hi:g}]; "
            "masks saved as 0/255 need dividing by 255"
        )


def _check_labels(labels: Tensor, classes: int) -> None:
    """One host sync per call: min, max and (for float maps) integrality together."""
    x = labels.detach()
    lo, hi = torch.aminmax(x)
    fractional = (x != x.round()).any() if x.is_floating_point() else torch.zeros((), dtype=torch.bool)
    lo, hi, fractional = torch.stack([lo.double(), hi.double(), fractional.double()]).tolist()
    if fractional:
        raise ConfigError(
            f"label map holds non-integer values (dtype {labels.dtype}); pass class ids, "
            "or a one-hot/probability target with one channel per class"
        )
    if lo < 0 or hi >= classes:
        bad = lo if lo < 0 else hi
        raise ConfigError(
            f"label map holds class id {bad:g}, outside the valid range 0..{classes - 1} for {classes} classes; "
            "set classes to match the masks or remap their values"
        )
