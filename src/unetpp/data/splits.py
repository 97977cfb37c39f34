"""Train/validation/test splits as index lists: seeded, deterministic, and aware of correlated samples.

Serial EM sections (ISBI 2012) are correlated with their neighbours, so a random split leaks near-copies
of training sections into validation. :func:`block_split` holds out *contiguous* blocks instead, optionally
with a gap of discarded sections around them; :func:`kfold_split` does k-fold cross-validation over
shuffled indices or contiguous blocks. Independent images (DSB nuclei) can use :func:`random_split`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..errors import ConfigError


class Split(NamedTuple):
    """Sorted indices of each part; a part may be empty (``test`` when no test fraction is asked)."""

    train: list[int]
    val: list[int]
    test: list[int]


def _check_n(n: int) -> None:
    if not isinstance(n, int) or isinstance(n, bool) or n < 2:
        raise ConfigError(f"n must be an int >= 2 (samples to split), got {n!r}")


def _block_size(n: int, fraction: float, name: str) -> int:
    if not 0 <= fraction < 1:
        raise ConfigError(f"{name} must be in [0, 1), got {fraction}")
    return 0 if fraction == 0 else max(1, round(n * fraction))


def block_split(n: int, val_fraction: float = 0.2, test_fraction: float = 0.0, *, gap: int = 0, seed: int = 0) -> Split:
    """Hold out one contiguous block for validation and, after it, one for testing.

    The blocks' position is drawn with ``seed``; ``gap`` samples on each side of a held-out block are
    dropped from every part, so that no training section touches a validation or test section.

    Args:
        n: number of samples, in acquisition order.
        val_fraction: share of samples in the validation block (at least one sample when > 0).
        test_fraction: share in the test block, placed right after the validation block (and its gap).
        gap: samples discarded between blocks.
        seed: chooses the blocks' position.

    Raises:
        ConfigError: fractions outside [0, 1), a negative gap, or nothing left for training.

    Example:
        >>> block_split(24, 0.25, seed=1)  # 24 ISBI sections: 6 consecutive ones held out
        Split(train=[0, 1, 2, 3, 4, 5, 6, 7, 14, 15, ..., 23], val=[8, 9, 10, 11, 12, 13], test=[])
    """
    _check_n(n)
    n_val = _block_size(n, val_fraction, "val_fraction")
    n_test = _block_size(n, test_fraction, "test_fraction")
    if gap < 0:
        raise ConfigError(f"gap must be >= 0, got {gap}")
    held = n_val + n_test + (gap if n_val and n_test else 0)
    if n - held - 2 * gap < 1:
        raise ConfigError(
            f"n={n} leaves no training samples with {n_val} val, {n_test} test and gap={gap}; lower the fractions"
        )
    start = int(np.random.default_rng(seed).integers(0, n - held + 1))
    val = list(range(start, start + n_val))
    test_start = start + n_val + (gap if n_val and n_test else 0)
    test = list(range(test_start, test_start + n_test))
    excluded = set(range(start - gap, start + held + gap))
    train = [i for i in range(n) if i not in excluded]
    if not train:
        raise ConfigError(f"n={n} leaves no training samples at this seed with gap={gap}; lower the gap")
    return Split(train, val, test)


def random_split(n: int, val_fraction: float = 0.2, test_fraction: float = 0.0, *, seed: int = 0) -> Split:
    """Shuffle with ``seed`` and cut: for independent samples only (see :func:`block_split` otherwise).

    Raises:
        ConfigError: fractions outside [0, 1) or nothing left for training.
    """
    _check_n(n)
    n_val = _block_size(n, val_fraction, "val_fraction")
    n_test = _block_size(n, test_fraction, "test_fraction")
    if n - n_val - n_test < 1:
        raise ConfigError(f"n={n} leaves no training samples with {n_val} val and {n_test} test; lower the fractions")
    order = np.random.default_rng(seed).permutation(n).tolist()
    val, test = order[:n_val], order[n_val : n_val + n_test]
    return Split(sorted(order[n_val + n_test :]), sorted(val), sorted(test))


def kfold_split(n: int, k: int = 5, *, seed: int = 0, contiguous: bool = False) -> list[Split]:
    """k folds; each sample is in the validation part of exactly one fold.

    Args:
        n: number of samples.
        k: number of folds (2 <= k <= n).
        seed: shuffles the samples before cutting (ignored when ``contiguous``).
        contiguous: cut consecutive blocks, for correlated serial sections.

    Raises:
        ConfigError: ``k`` outside ``2..n``.
    """
    _check_n(n)
    if not isinstance(k, int) or not 2 <= k <= n:
        raise ConfigError(f"k must be an int in 2..n={n}, got {k!r}")
    order = np.arange(n) if contiguous else np.random.default_rng(seed).permutation(n)
    folds = np.array_split(order, k)
    splits = []
    for f in range(k):
        val = sorted(folds[f].tolist())
        train = sorted(np.concatenate([folds[g] for g in range(k) if g != f]).tolist())
        splits.append(Split(train, val, []))
    return splits
