"""NestedUNet: modules built from a GridSpec and one forward loop over its nodes.

Module names are grid coordinates and are API (checkpoints and pruning match on them):
``encoder.x_{i}_0`` for X^{i,0}, ``nodes.x_{i}_{j}`` for decoder blocks, ``ups.x_{i}_{j}`` for the
up-sampler feeding X^{i,j}, ``heads.x_0_{j}`` for the supervision heads. With a timm encoder the
backbone sits under ``encoder.backbone`` with timm's own names, and ``encoder.x_{i}_0`` holds only
the plain levels below its first stride.
"""

from __future__ import annotations

from functools import cache

import torch
from torch import Tensor, nn

from ..errors import ConfigError, InputShapeError
from .blocks import ConvBlock, Head, UpSample, set_memory_efficient
from .encoders import EncoderWeights, PlainEncoder, TimmEncoder
from .grid import GridSpec, Node
from .layers import NORMS, NormKind, check_spatial_dims
from .recompute import recompute_outputs


def key(node: Node) -> str:
    return f"x_{node[0]}_{node[1]}"


class NestedUNet(nn.Module):
    """Any member of the UNet++ family, given its topology.

    Input sizes: every spatial size must be divisible by 2^depth; the model refuses other sizes
    rather than silently padding (``unetpp.predict`` pads and crops back for you).

    Args:
        spec: the topology (see :mod:`unetpp.models.grid`).
        in_channels: image channels.
        classes: output channels; 1 means binary (sigmoid), more means softmax over classes.
        spatial_dims: 2 for images (B, C, H, W), 3 for volumes (B, C, D, H, W).
        norm: None for the authors' plain block, "batch" or "instance".
        dropout: dropout after each convolution of each block.
        name: registry name this model was built as (kept in checkpoints).
        encoder: None for the paper's plain encoder, or a timm backbone name (2D only) that
            supplies X^{i,0}; see :class:`~unetpp.models.encoders.TimmEncoder`. The decoder keeps
            the grid's widths whatever the backbone's.
        encoder_weights: "imagenet" or None (random). Not part of :attr:`config`: a checkpoint
            carries the weights, so a rebuilt model starts from None.
        encoder_freeze: train the decoder only; see :meth:`freeze_encoder`.
        memory_efficient: recompute each block's concatenation and first norm + ReLU in backward
            instead of storing them (about half the training memory for a few percent more time; the
            same gradients). A training option, not part of :attr:`config`; see :attr:`memory_efficient`.

    Returns (forward): logits of every head X^{0,j}, j in ``spec.heads`` ascending, each
    ``(B, classes, *spatial)``; always a list, with one element when there is one head or ``head``
    is given.

    Example:
        >>> m = NestedUNet(GridSpec((4, 8), "dense", frozenset({(0, 1)}), (1,)))
        >>> [y.shape for y in m(torch.zeros(2, 1, 16, 16))]
        [torch.Size([2, 1, 16, 16])]
    """

    def __init__(
        self,
        spec: GridSpec,
        in_channels: int = 1,
        classes: int = 1,
        spatial_dims: int = 2,
        norm: NormKind = "batch",
        dropout: float = 0.0,
        name: str = "custom",
        encoder: str | None = None,
        encoder_weights: EncoderWeights = None,
        encoder_freeze: bool = False,
        memory_efficient: bool = False,
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims)
        if encoder is not None and spatial_dims != 2:
            raise ConfigError(f"encoder={encoder!r} is a 2D backbone; use encoder=None for spatial_dims={spatial_dims}")
        for arg, value in (("in_channels", in_channels), ("classes", classes)):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{arg} must be a positive integer, got {value!r}")
        if norm not in NORMS:
            raise ConfigError(f"norm must be one of {NORMS}, got {norm!r}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout!r}")
        self.spec = spec
        self.in_channels, self.classes, self.spatial_dims = in_channels, classes, spatial_dims
        self.norm, self.dropout, self.name, self.encoder_name = norm, dropout, name, encoder
        levels = spec.encoder_levels(spec.nodes)
        self.encoder: PlainEncoder | TimmEncoder
        if encoder is None:
            self.encoder = PlainEncoder(in_channels, spec.widths[:levels], spatial_dims, norm, dropout)
        else:
            self.encoder = TimmEncoder(encoder, in_channels, levels, spec.widths, encoder_weights, norm, dropout)
        # One channel arithmetic for every encoder: each input of a node counts with its actual
        # width (the encoder's for X^{i,0}, the grid's for j >= 1); for the plain encoder they coincide.
        f, e = spec.widths, self.encoder.widths
        self.ups = nn.ModuleDict(
            {key((i, j)): UpSample(spec.width((i + 1, j - 1), e), f[i], spatial_dims) for i, j in spec.order()}
        )
        self.nodes = nn.ModuleDict(
            {key(n): ConvBlock(spec.in_channels(n, e), f[n[0]], spatial_dims, norm, dropout) for n in spec.order()}
        )
        self.heads = nn.ModuleDict({key((0, j)): Head(f[0], classes, spatial_dims) for j in spec.heads})
        # Channels-last end to end: oneDNN's convolutions run 1.2-1.6x faster on it on CPU (see
        # benchmarks/RESULTS.md); load_state_dict and optimizers keep the layout of the parameters.
        self.memory_format = torch.channels_last if spatial_dims == 2 else torch.channels_last_3d
        self.to(memory_format=self.memory_format)
        self.freeze_encoder(encoder_freeze)
        self.memory_efficient = memory_efficient

    @property
    def memory_efficient(self) -> bool:
        """Recompute concatenations and norm + ReLU in backward (see :mod:`unetpp.models.recompute`); settable."""
        return self._memory_efficient

    @memory_efficient.setter
    def memory_efficient(self, enabled: bool) -> None:
        if not isinstance(enabled, bool):
            raise ConfigError(f"memory_efficient must be True or False, got {enabled!r}")
        self._memory_efficient = enabled
        set_memory_efficient(self, enabled)

    @property
    def depth(self) -> int:
        return self.spec.depth

    @property
    def config(self) -> dict[str, object]:
        """Everything needed to rebuild this model, in plain types (travels with checkpoints)."""
        return {
            "name": self.name,
            "spec": self.spec.to_dict(),
            "in_channels": self.in_channels,
            "classes": self.classes,
            "spatial_dims": self.spatial_dims,
            "norm": self.norm,
            "dropout": self.dropout,
            "encoder": self.encoder_name,
            "encoder_freeze": self.encoder_frozen,
        }

    @property
    def encoder_frozen(self) -> bool:
        return isinstance(self.encoder, TimmEncoder) and self.encoder.frozen

    def freeze_encoder(self, frozen: bool = True) -> None:
        """Freeze (or unfreeze) the pretrained backbone: no gradients, batch norms kept in eval mode.

        Freezing trains the decoder on fixed ImageNet features (useful with little data or to
        warm up the decoder before fine-tuning everything). The backbone's batch norms stay in eval
        mode even under ``model.train()``, since updating their statistics would shift the frozen
        features. The plain levels ``encoder.x_{i}_0`` of a timm encoder are new and keep training.

        Raises:
            ConfigError: the model has the plain encoder, which has no pretrained part to freeze.
        """
        if isinstance(self.encoder, TimmEncoder):
            self.encoder.freeze(frozen)
        elif frozen:
            raise ConfigError("encoder_freeze needs a pretrained backbone (encoder='resnet34', ...); got encoder=None")

    def parameter_groups(self, encoder_lr_scale: float = 1.0, lr: float | None = None) -> list[dict[str, object]]:
        """Optimizer parameter groups: the pretrained backbone at ``lr * encoder_lr_scale``, the rest at `lr`.

        Fine-tuning an ImageNet backbone at a tenth of the decoder's rate (``encoder_lr_scale=0.1``)
        keeps its features while the new decoder learns. Groups are named "decoder" (everything
        but the backbone: decoder, heads, plain levels) and "encoder" (the timm backbone); frozen
        parameters are left out and empty groups dropped, so the plain encoder gives one group.
        Each group carries its "lr" when `lr` is given; without it the optimizer's default applies,
        which is only possible when every group trains at the same rate.

        Raises:
            ConfigError: `encoder_lr_scale` is not positive, or differs from 1 for a backbone but
                `lr` is missing (the encoder group could not carry its own rate).

        Example:
            >>> opt = torch.optim.AdamW(model.parameter_groups(0.1, lr=1e-3), lr=1e-3)
        """
        if not encoder_lr_scale > 0:
            raise ConfigError(f"encoder_lr_scale must be > 0, got {encoder_lr_scale!r}")
        pretrained = self.encoder.pretrained_parameters() if isinstance(self.encoder, TimmEncoder) else []
        if lr is None and encoder_lr_scale != 1.0 and any(p.requires_grad for p in pretrained):
            raise ConfigError(
                f"parameter_groups(encoder_lr_scale={encoder_lr_scale}) needs lr=... so that the encoder group "
                "carries its own learning rate (lr * encoder_lr_scale)"
            )
        ids = {id(p) for p in pretrained}
        groups: list[dict[str, object]] = [
            {"name": "decoder", "params": [p for p in self.parameters() if id(p) not in ids and p.requires_grad]},
            {"name": "encoder", "params": [p for p in pretrained if p.requires_grad]},
        ]
        if lr is not None:
            groups[0]["lr"], groups[1]["lr"] = lr, lr * encoder_lr_scale
        return [g for g in groups if g["params"]]

    def describe(self) -> str:
        """One line that tells two models apart, for messages."""
        s = self.spec
        return (
            f"{self.name} ({s.skip} skips, depth {s.depth}, widths {list(s.widths)}, heads {list(s.heads)}, "
            f"{self.in_channels}->{self.classes} channels, {self.spatial_dims}D, norm {self.norm}"
            + ("" if self.encoder_name is None else f", encoder {self.encoder_name}")
            + (", frozen" if self.encoder_frozen else "")
            + ")"
        )

    @classmethod
    def from_config(cls, config: dict[str, object]) -> NestedUNet:
        cfg = dict(config)
        spec = GridSpec.from_dict(cfg.pop("spec"))  # type: ignore[arg-type]
        return cls(spec, **cfg)  # type: ignore[arg-type]

    def forward(self, x: Tensor, head: int | None = None) -> list[Tensor]:
        if self.memory_efficient and torch.is_grad_enabled():
            with recompute_outputs():  # blocks' outputs are saved for backward as recipes, not tensors
                return self._forward(x, head)
        return self._forward(x, head)

    def _forward(self, x: Tensor, head: int | None) -> list[Tensor]:
        self.check_input(x)
        x = x.contiguous(memory_format=self.memory_format)
        heads = self.spec.heads if head is None else (self._check_head(head),)
        levels, schedule = _schedule(self.spec, heads)
        feats: dict[Node, Tensor] = {(i, 0): f for i, f in enumerate(self.encoder(x, levels))}
        for node, preds, release in schedule:
            up = self.ups[key(node)](feats[preds[0]])
            feats[node] = self.nodes[key(node)]([up, *(feats[p] for p in preds[1:])])  # concatenated there
            for done in release:  # free what no later node reads (lowers inference peak memory)
                del feats[done]
        return [self.heads[key((0, j))](feats[(0, j)]).contiguous() for j in heads]

    def _check_head(self, head: int) -> int:
        if head not in self.spec.heads:
            raise ConfigError(f"head={head!r} does not exist; this model has heads at depth {list(self.spec.heads)}")
        return head

    def check_input(self, x: Tensor) -> None:
        """Raise InputShapeError naming the shape got and what would be valid."""
        if x.ndim != self.spatial_dims + 2:
            layout = "(B, C, H, W)" if self.spatial_dims == 2 else "(B, C, D, H, W)"
            raise InputShapeError(f"expected a {self.spatial_dims + 2}-D tensor {layout}, got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise InputShapeError(
                f"the model takes {self.in_channels} input channel(s), got {x.shape[1]} (shape {tuple(x.shape)})"
            )
        sizes = tuple(int(s) for s in x.shape[2:])
        m = 2**self.depth
        if any(s % m for s in sizes):
            lower = [s // m * m for s in sizes]
            upper = [s if s % m == 0 else s // m * m + m for s in sizes]
            options = [o for o in (lower, upper) if min(o) > 0]
            fmt = "×".join
            raise InputShapeError(
                f"{fmt(map(str, sizes))} is not divisible by {m} (2^depth, depth {self.depth}); nearest valid sizes "
                + " or ".join(fmt(map(str, o)) for o in options)
                + "; unetpp.predict pads for you"
            )


@cache
def _schedule(
    spec: GridSpec, heads: tuple[int, ...]
) -> tuple[int, tuple[tuple[Node, tuple[Node, ...], tuple[Node, ...]], ...]]:
    """The forward schedule: encoder levels and the ordered (node, inputs, nodes-to-free-after) steps the heads need."""
    needed = frozenset().union(*(spec.ancestors((0, j)) for j in heads))
    order = [n for n in spec.order() if n in needed]
    inputs = {n: tuple(spec.predecessors(n)) for n in order}
    last_use: dict[Node, int] = {}
    for step, node in enumerate(order):
        for p in inputs[node]:
            last_use[p] = step
    keep = {(0, j) for j in heads}
    release = {step: tuple(p for p, s in last_use.items() if s == step and p not in keep) for step in range(len(order))}
    schedule = tuple((n, inputs[n], release[s]) for s, n in enumerate(order))
    return spec.encoder_levels(needed), schedule
