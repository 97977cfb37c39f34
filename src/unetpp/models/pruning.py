"""Pruning makes a new, physically smaller model; selection runs only what one head needs."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .nested import NestedUNet


def prune(model: NestedUNet, depth: int) -> NestedUNet:
    """Keep only the nodes head `depth` needs (i + j <= depth for UNet+/UNet++, U-Net L^depth for U-Net^e).

    The result is an ordinary NestedUNet with one head: its output equals ``model(x)`` at head
    `depth` exactly (in eval mode), and it can be saved, exported, benchmarked and pruned again.

    Raises:
        ConfigError: `depth` is not one of the model's heads.
    """
    spec = model.spec.pruned(depth)
    small = NestedUNet.from_config({**model.config, "spec": spec.to_dict()})
    small.load_state_dict({k: v for k, v in model.state_dict().items() if k in small.state_dict()}, strict=True)
    small.to(next(model.parameters()).device)
    return small.train(model.training)


def ensemble(logits: list[Tensor]) -> Tensor:
    """The paper's ensemble mode: the mean of the heads' probabilities, in float32.

    Sigmoid for one class, softmax over classes otherwise; with one head (``head=d``, a pruned model,
    or one head scored alone) this is that head's probabilities. Returns ``(B, classes, *spatial)``.
    The one function from heads to probabilities: prediction, evaluation and validation all use it.
    """
    probs = [y.float().sigmoid() if y.shape[1] == 1 else y.float().softmax(dim=1) for y in logits]
    return probs[0] if len(probs) == 1 else torch.stack(probs).mean(dim=0)


def heads_and_ensemble(
    logits: list[Tensor], heads: Sequence[int], chosen: Sequence[int] | None = None
) -> dict[str, Tensor]:
    """Probabilities of every head, ``"head{j}"``, and with several heads of their ensemble, ``"ensemble"``.

    What evaluation and validation score: each head alone (the pruned models' accuracy, the paper's Fig. 5)
    and the ensemble (its accurate mode, the plain mean). `heads` are the j of the heads whose `logits` these
    are; `chosen`, some of them (the heads training chose on validation), adds ``"chosen"``: the mean of
    those heads, what prediction runs by default (the plain mean again where all were chosen).
    """
    probs = {f"head{j}": ensemble([y]) for j, y in zip(heads, logits, strict=True)}
    if len(logits) > 1:
        probs["ensemble"] = ensemble(logits)
    if chosen and len(logits) > 1 and set(chosen) <= set(heads):
        probs["chosen"] = torch.stack([probs[f"head{j}"] for j in chosen]).mean(dim=0)
    return probs
