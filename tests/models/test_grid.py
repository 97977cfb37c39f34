"""Topology checks: pure Python, no torch modules."""

from __future__ import annotations

import pytest

from unetpp import ConfigError, GridSpec
from unetpp.models.grid import anti_diagonal, triangle
from unetpp.models.registry import unet, unet_e, unet_plus, unet_plus_plus

W = (4, 8, 16, 32, 64)


def test_triangle_and_anti_diagonal() -> None:
    assert len(triangle(4)) == 10
    assert anti_diagonal(3) == {(2, 1), (1, 2), (0, 3)}


def test_order_finishes_each_anti_diagonal_before_the_next() -> None:
    order = unet_plus_plus(4, W, True).order()
    sums = [i + j for i, j in order]
    assert sums == sorted(sums)
    assert order[:3] == [(0, 1), (1, 1), (0, 2)]


@pytest.mark.parametrize(
    ("builder", "expected"),
    [
        (unet_plus_plus, {(0, 1), (0, 2), (1, 1)}),
        (unet_plus, {(0, 1), (0, 2), (1, 1)}),
        (unet_e, {(0, 2), (1, 1)}),
    ],
)
def test_ancestors_of_head_2(builder, expected) -> None:
    assert builder(4, W, True).ancestors((0, 2)) == expected


@pytest.mark.parametrize(
    ("i", "j", "expected"), [(0, 3, [(0, 0), (0, 1), (0, 2)]), (1, 1, [(1, 0)]), (2, 2, [(2, 0), (2, 1)])]
)
def test_dense_inputs(i, j, expected) -> None:
    assert unet_plus_plus(4, W, True).inputs(i, j) == expected


def test_skip_rules_differ_only_in_same_level_inputs() -> None:
    assert unet_plus(4, W, True).inputs(1, 3) == [(1, 2)]
    assert unet_e(4, W, True).inputs(1, 3) == [(1, 0)]


@pytest.mark.parametrize("d", [1, 2, 3, 4])
def test_pruned_unet_e_is_unet_of_that_depth(d) -> None:
    assert unet_e(4, W, True).pruned(d) == unet(d, W[: d + 1], True)


@pytest.mark.parametrize("d", [1, 2, 3, 4])
def test_pruned_unet_plus_plus_is_the_triangle(d) -> None:
    assert unet_plus_plus(4, W, True).pruned(d) == GridSpec(W[: d + 1], "dense", triangle(d), (d,))


def test_prune_to_missing_head_names_the_heads() -> None:
    with pytest.raises(ConfigError, match=r"heads only at depth \[4\]"):
        unet(4, W, True).pruned(2)


def test_dict_round_trip() -> None:
    spec = unet_plus(3, W[:4], True)
    assert GridSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"skip": "diagonal"}, "skip rule"),
        ({"nodes": frozenset({(0, 5)})}, "outside the grid"),
        ({"heads": (3,)}, "heads must be"),
        ({"nodes": frozenset({(0, 2)}), "heads": (2,)}, "not in the grid"),
    ],
)
def test_invalid_specs(kwargs, match) -> None:
    args = {"widths": W[:3], "skip": "dense", "nodes": triangle(2), "heads": (1, 2)} | kwargs
    with pytest.raises(ConfigError, match=match):
        GridSpec(**args)
