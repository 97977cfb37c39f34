"""Inference-time rewrites that keep the output and lower the cost."""

from __future__ import annotations

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from .blocks import ConvBlock
from .nested import NestedUNet


def fuse_batch_norm(model: NestedUNet) -> NestedUNet:
    """Fold every batch norm into the convolution before it; returns a new model in eval mode.

    A batch norm in eval mode is an affine map per channel, so conv -> BN equals one conv with
    scaled weights and a bias. The result is an ordinary NestedUNet with the authors' plain block
    (``norm=None``): it can be saved, pruned and exported, and it skips one full pass over every
    activation per convolution. Models with ``norm=None`` or instance norm (whose statistics
    depend on the input, so it cannot be folded) are returned as an eval-mode copy. A timm
    backbone keeps its own batch norms (in eval mode), since its layers are not our blocks; the
    decoder and the plain levels ``encoder.x_{i}_0`` are folded.
    """
    if model.norm != "batch":
        fused = NestedUNet.from_config(model.config)
        fused.load_state_dict(model.state_dict())
        return fused.to(next(model.parameters()).device).eval()
    state, folded = {}, []
    for name, module in model.named_modules():
        if not isinstance(module, ConvBlock):  # a timm backbone keeps its own (timm-named) norms
            continue
        for k in (1, 2):
            conv, norm = getattr(module, f"conv{k}"), getattr(module, f"norm{k}")
            if isinstance(conv, nn.modules.conv._ConvNd) and isinstance(norm, nn.modules.batchnorm._BatchNorm):
                weight, bias = fuse_conv_bn_weights(
                    conv.weight, conv.bias, norm.running_mean, norm.running_var, norm.eps, norm.weight, norm.bias
                )
                state[f"{name}.conv{k}.weight"], state[f"{name}.conv{k}.bias"] = weight.detach(), bias.detach()
                folded.append(f"{name}.norm{k}.")
    fused = NestedUNet.from_config({**model.config, "norm": None})
    plain = {k: v for k, v in model.state_dict().items() if not k.startswith(tuple(folded)) and k not in state}
    fused.load_state_dict({**plain, **state})
    return fused.to(next(model.parameters()).device).eval()
