"""Splits: deterministic per seed, disjoint, contiguous where promised, and arguments validated."""

from __future__ import annotations

import pytest

from unetpp import ConfigError
from unetpp.data import block_split, kfold_split, random_split


def is_contiguous(indices: list[int]) -> bool:
    return indices == list(range(indices[0], indices[0] + len(indices)))


@pytest.mark.parametrize("seed", range(6))
def test_block_split_is_contiguous_disjoint_and_seeded(seed) -> None:
    split = block_split(24, 0.2, 0.2, gap=1, seed=seed)
    assert split == block_split(24, 0.2, 0.2, gap=1, seed=seed)
    assert len(split.val) == len(split.test) == 5
    assert is_contiguous(split.val)
    assert is_contiguous(split.test)
    parts = [set(split.train), set(split.val), set(split.test)]
    assert sum(map(len, parts)) == len(set.union(*parts))  # disjoint
    held = split.val + split.test
    # with gap=1, no training section touches a held-out one
    assert all(abs(t - h) > 1 for t in split.train for h in held)


def test_block_split_positions_vary_with_seed() -> None:
    starts = {block_split(24, 0.25, seed=s).val[0] for s in range(20)}
    assert len(starts) > 3


def test_block_split_without_gap_uses_everything() -> None:
    split = block_split(10, 0.3)
    assert sorted(split.train + split.val + split.test) == list(range(10))
    assert split.test == []


def test_random_split() -> None:
    split = random_split(50, 0.2, 0.1, seed=3)
    assert split == random_split(50, 0.2, 0.1, seed=3)
    assert split != random_split(50, 0.2, 0.1, seed=4)
    assert (len(split.train), len(split.val), len(split.test)) == (35, 10, 5)
    assert sorted(split.train + split.val + split.test) == list(range(50))


@pytest.mark.parametrize("contiguous", [False, True])
def test_kfold_covers_each_sample_once(contiguous) -> None:
    folds = kfold_split(23, 5, seed=1, contiguous=contiguous)
    assert folds == kfold_split(23, 5, seed=1, contiguous=contiguous)
    assert len(folds) == 5
    assert sorted(i for f in folds for i in f.val) == list(range(23))
    for f in folds:
        assert sorted(f.train + f.val) == list(range(23))
        assert not set(f.train) & set(f.val)
        if contiguous:
            assert is_contiguous(f.val)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: block_split(1), "n must be an int >= 2"),
        (lambda: block_split(10, 1.0), r"val_fraction must be in \[0, 1\)"),
        (lambda: block_split(10, 0.2, -0.1), r"test_fraction must be in \[0, 1\)"),
        (lambda: block_split(10, 0.2, gap=-1), "gap must be >= 0"),
        (lambda: block_split(4, 0.5, 0.25, gap=1), "leaves no training samples"),
        (lambda: random_split(3, 0.5, 0.4), "leaves no training samples"),
        (lambda: kfold_split(5, 1), r"k must be an int in 2\.\.n=5"),
        (lambda: kfold_split(5, 6), r"k must be an int in 2\.\.n=5"),
    ],
)
def test_bad_arguments(call, message) -> None:
    with pytest.raises(ConfigError, match=message):
        call()
