"""The topology of the nested U-Net grid, as pure data (no torch).

UNet++ (Zhou et al., "UNet++: Redesigning Skip Connections to Exploit Multiscale Features in
Image Segmentation", IEEE TMI 2019, doi:10.1109/TMI.2019.2959609) and its family are subsets of
one triangular grid of nodes X^{i,j}: i is the down-sampling level, j the position along the
skip path, i + j <= L. X^{i,0} is the encoder; a decoder node X^{i,j} (j >= 1) convolves the
concatenation of the up-sampled X^{i+1,j-1} and some same-level predecessors. A variant is only
(which decoder nodes exist, which same-level predecessors each takes, which X^{0,j} have heads).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Literal

from ..errors import ConfigError

Node = tuple[int, int]
SkipRule = Literal["long", "short", "dense"]
SKIP_RULES: tuple[str, ...] = ("long", "short", "dense")


@dataclass(frozen=True)
class GridSpec:
    """Which nodes exist and what each reads.

    Args:
        widths: channels f_i of level i, i = 0..depth.
        skip: same-level inputs of X^{i,j}: "long" X^{i,0} (U-Net, U-Net^e), "short" X^{i,j-1}
            (UNet+), "dense" X^{i,0..j-1} (UNet++).
        nodes: decoder nodes X^{i,j}, j >= 1.
        heads: j of each supervised X^{0,j}, ascending.
    """

    widths: tuple[int, ...]
    skip: SkipRule
    nodes: frozenset[Node]
    heads: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.skip not in SKIP_RULES:
            raise ConfigError(f"skip rule must be one of {SKIP_RULES}, got {self.skip!r}")
        if len(self.widths) < 2 or any(int(w) < 1 for w in self.widths):
            raise ConfigError(f"widths must hold at least 2 positive channel counts, got {self.widths}")
        for i, j in self.nodes:
            if j < 1 or i < 0 or i + j > self.depth:
                raise ConfigError(f"node X^({i},{j}) lies outside the grid of depth {self.depth}")
        missing = [(0, j) for j in self.heads if (0, j) not in self.nodes]
        if not self.heads or missing or list(self.heads) != sorted(set(self.heads)):
            raise ConfigError(f"heads must be ascending j of existing nodes X^(0,j); got {self.heads}")
        for node in self.nodes:  # every input of every node must exist
            for pred in self.predecessors(node):
                if pred[1] > 0 and pred not in self.nodes:
                    raise ConfigError(f"node X^{node} reads X^{pred}, which is not in the grid")

    @property
    def depth(self) -> int:
        return len(self.widths) - 1

    def order(self) -> list[Node]:
        """Execution order: anti-diagonal i + j ascending, then deep first, as in the paper's figure.

        Finishing anti-diagonal s before s + 1 means head d is ready once s = d.
        """
        return sorted(self.nodes, key=lambda n: (n[0] + n[1], -n[0]))

    def inputs(self, i: int, j: int) -> list[Node]:
        """Same-level predecessors of X^{i,j}, concatenated after the up-sampled X^{i+1,j-1}."""
        if self.skip == "long":
            return [(i, 0)]
        if self.skip == "short":
            return [(i, j - 1)]
        return [(i, k) for k in range(j)]

    def predecessors(self, node: Node) -> list[Node]:
        """All inputs of a decoder node in concatenation order: [up-sampled, *same-level]."""
        i, j = node
        return [(i + 1, j - 1), *self.inputs(i, j)]

    def width(self, node: Node, encoder_widths: Sequence[int] | None = None) -> int:
        """Channels of X^{i,j}: the encoder's width at level i for j = 0, the grid's f_i for j >= 1.

        A pretrained backbone has its own widths (ResNet-34: 64-64-128-256), so X^{i,0} need not
        be f_i; with the plain encoder both coincide and `encoder_widths` may be omitted.
        """
        i, j = node
        return self.widths[i] if j > 0 or encoder_widths is None else encoder_widths[i]

    def in_channels(self, node: Node, encoder_widths: Sequence[int] | None = None) -> int:
        """Channels of the concatenated input of X^{i,j}: f_i for the up-sampled node plus each skip's width."""
        i, j = node
        return self.widths[i] + sum(self.width(p, encoder_widths) for p in self.inputs(i, j))

    def ancestors(self, node: Node) -> frozenset[Node]:
        """Decoder nodes that `node` depends on, itself included: exactly what its head needs."""
        return _ancestors(self, node)

    def encoder_levels(self, nodes: frozenset[Node]) -> int:
        """Number of encoder levels X^{0..n-1,0} that the given decoder nodes read."""
        return 1 + max(i + j for i, j in nodes)

    def pruned(self, depth: int) -> GridSpec:
        """The topology head `depth` needs and nothing else: a physically smaller grid."""
        if depth not in self.heads:
            raise ConfigError(
                f"cannot prune to depth {depth}: this model has heads only at depth {list(self.heads)} "
                "(a model without deep supervision has one head; train with deep_supervision=True to prune)"
            )
        return GridSpec(self.widths[: depth + 1], self.skip, self.ancestors((0, depth)), (depth,))

    def to_dict(self) -> dict[str, object]:
        """Plain types only, so a checkpoint loads with ``weights_only=True``."""
        return {
            "widths": list(self.widths),
            "skip": self.skip,
            "nodes": sorted([list(n) for n in self.nodes]),
            "heads": list(self.heads),
        }

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> GridSpec:
        return cls(
            widths=tuple(int(w) for w in d["widths"]),  # type: ignore[union-attr]
            skip=str(d["skip"]),  # type: ignore[arg-type]
            nodes=frozenset((int(i), int(j)) for i, j in d["nodes"]),  # type: ignore[union-attr]
            heads=tuple(int(h) for h in d["heads"]),  # type: ignore[union-attr]
        )


@cache
def _ancestors(spec: GridSpec, node: Node) -> frozenset[Node]:
    if node[1] == 0:  # an encoder output, not a decoder node
        return frozenset()
    return frozenset({node}).union(*(_ancestors(spec, p) for p in spec.predecessors(node)))


def triangle(depth: int) -> frozenset[Node]:
    """All decoder nodes of a grid of the given depth: i + j <= depth, j >= 1."""
    return frozenset((i, j) for j in range(1, depth + 1) for i in range(depth - j + 1))


def anti_diagonal(depth: int) -> frozenset[Node]:
    """The decoder of a plain U-Net of the given depth: i + j = depth, j >= 1."""
    return frozenset((depth - j, j) for j in range(1, depth + 1))
