"""The nested pyramid is the dense grid: node by node, each X^{i,j} reads exactly what GridSpec says."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool

from unetpp import ConfigError
from unetpp.detection import NestedPyramid, last_nodes, pyramid_spec
from unetpp.models.grid import triangle

CHANNELS = [8, 16, 24, 32]


def features(size: int = 32) -> OrderedDict[str, torch.Tensor]:
    return OrderedDict((str(i), torch.randn(2, c, size >> i, size >> i)) for i, c in enumerate(CHANNELS))


def test_spec_is_the_dense_triangle() -> None:
    spec = pyramid_spec(4, 16)
    assert spec.skip == "dense"
    assert spec.nodes == triangle(3)
    assert last_nodes(spec) == [(0, 3), (1, 2), (2, 1), (3, 0)]
    assert spec.inputs(0, 3) == [(0, 0), (0, 1), (0, 2)]


def test_every_node_reads_the_grid_inputs_in_order() -> None:
    pyramid = NestedPyramid(CHANNELS, 16).eval()
    spec = pyramid.spec
    outputs: dict[tuple[int, int], torch.Tensor] = {}
    inputs: dict[tuple[int, int], torch.Tensor] = {}
    ups: dict[tuple[int, int], torch.Tensor] = {}

    def keep(store: dict, node: tuple[int, int], what: str):  # noqa: ANN202
        def hook(_m, args, out):  # noqa: ANN001, ANN202
            store[node] = args[0] if what == "in" else out

        return hook

    for i in range(4):
        pyramid.lateral[f"x_{i}_0"].register_forward_hook(keep(outputs, (i, 0), "out"))
    for node in spec.order():
        name = f"x_{node[0]}_{node[1]}"
        pyramid.nodes[name].register_forward_hook(keep(inputs, node, "in"))
        pyramid.nodes[name].register_forward_hook(keep(outputs, node, "out"))
        pyramid.ups[name].register_forward_hook(keep(ups, node, "out"))
    with torch.no_grad():
        out = pyramid(features())
    assert sorted(inputs) == sorted(triangle(3))
    for (i, j), got in inputs.items():
        expected = torch.cat([ups[(i, j)], *(outputs[(i, k)] for k in range(j))], dim=1)
        assert got.shape[1] == 16 * (j + 1) == spec.in_channels((i, j))
        torch.testing.assert_close(got, expected)
        # the up-sampler reads the node below-left, X^{i+1,j-1}
        torch.testing.assert_close(ups[(i, j)], pyramid.ups[f"x_{i}_{j}"](outputs[(i + 1, j - 1)]))
    assert list(out) == ["0", "1", "2", "3", "pool"]
    for i, node in enumerate(last_nodes(spec)):
        torch.testing.assert_close(out[str(i)], pyramid.outputs[f"x_{node[0]}_{node[1]}"](outputs[node]))


def test_same_interface_as_torchvision_fpn() -> None:
    feats = features()
    fpn = FeaturePyramidNetwork(CHANNELS, 16, extra_blocks=LastLevelMaxPool())
    ours, theirs = NestedPyramid(CHANNELS, 16)(feats), fpn(feats)
    assert list(ours) == list(theirs)
    assert [t.shape for t in ours.values()] == [t.shape for t in theirs.values()]


def test_odd_sizes_are_cropped_not_refused() -> None:
    feats = OrderedDict(
        (str(i), torch.randn(1, c, s, s)) for i, (c, s) in enumerate(zip(CHANNELS, [25, 13, 7, 4], strict=False))
    )
    out = NestedPyramid(CHANNELS, 8)(feats)
    assert [o.shape[-1] for o in out.values()] == [25, 13, 7, 4, 2]


@pytest.mark.parametrize(
    "kwargs", [{"in_channels_list": [8], "out_channels": 4}, {"in_channels_list": CHANNELS, "out_channels": 0}]
)
def test_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        NestedPyramid(**kwargs)
