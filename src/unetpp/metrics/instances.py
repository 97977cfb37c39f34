"""Instance segmentation metrics on label maps: the DSB 2018 score, AP@0.5, object precision/recall.

The columns of UNet++'s Table V (Zhou et al., IEEE TMI 2019): semantic IoU and Dice of the nuclei
(the union of the instances) and the 2018 Data Science Bowl score. Inputs are instance **label
maps** ``(H, W)`` (0 background, each positive id one object; ids need not be consecutive), as
numpy arrays or tensors. Detectors give them through :func:`masks_to_label_map`; semantic models
(U-Net, UNet++) through :func:`label_components`, so all four rows of Table V are scored alike.

Definitions (the Kaggle competition's, which Cellpose and StarDist also use):

- Objects are matched one-to-one by IoU: a pair is a match at threshold t when IoU > t. For
  t >= 0.5 a match is unique (two objects cannot both overlap another by more than half its union).
- At threshold t: TP = matches, FP = unmatched predictions, FN = unmatched true objects, and the
  image's score is TP / (TP + FP + FN).
- :func:`dsb_score`: per image the mean of that score over t = 0.50, 0.55, ..., 0.95; over a set,
  the mean over images. ``ap50`` is the score at t = 0.5 alone ("AP at IoU 0.5" as the cell
  segmentation literature uses it: no confidence ranking, so semantic models get it too -- not
  COCO's ranked AP).
- An image with no true and no predicted object scores 1 (nothing to find, nothing found); with no
  true object but some prediction, 0. Semantic IoU and Dice follow :mod:`unetpp.metrics` (both
  empty: 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from torch import Tensor

from ..errors import ConfigError, InputShapeError

if TYPE_CHECKING:  # numpy and scipy are imported by the functions: `import unetpp.metrics` needs torch only
    import numpy as np

    ArrayLike = np.ndarray | Tensor
THRESHOLDS = tuple(round(0.5 + 0.05 * k, 2) for k in range(10))

__all__ = [
    "THRESHOLDS",
    "InstanceScores",
    "ap50",
    "dsb_score",
    "instance_scores",
    "label_components",
    "masks_to_label_map",
    "match_iou",
    "mean_scores",
]


def _as_numpy(x: ArrayLike) -> np.ndarray:
    import numpy as np

    return x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)


def label_components(mask: ArrayLike, connectivity: int = 1) -> np.ndarray:
    """Instance label map of a semantic mask: each connected foreground component gets an id 1..N.

    Args:
        mask: ``(H, W)`` (or ``(D, H, W)``); non-zero (or ``> 0.5`` for floats) is foreground.
        connectivity: 1 joins edge neighbours only (4 in 2D), ``mask.ndim`` all (8 in 2D).

    Raises:
        ConfigError: bad connectivity.
    """
    import numpy as np
    from scipy import ndimage

    m = _as_numpy(mask)
    m = m > 0.5 if m.dtype.kind == "f" else m != 0
    if not 1 <= connectivity <= m.ndim:
        raise ConfigError(f"connectivity must be in 1..{m.ndim} for a {m.ndim}-D mask, got {connectivity!r}")
    labels, _ = ndimage.label(m, structure=ndimage.generate_binary_structure(m.ndim, connectivity))
    return labels.astype(np.int32)


def masks_to_label_map(masks: ArrayLike, scores: ArrayLike | None = None, threshold: float = 0.5) -> np.ndarray:
    """One label map from per-instance masks ``(N, [1,] H, W)`` (probabilities or binary), as a detector gives.

    Where instances overlap, the pixel goes to the higher-scoring one (painted last); an instance
    left with no pixel disappears. Ids are 1..N in the masks' order (gaps where one vanished).
    """
    import numpy as np

    m = _as_numpy(masks)
    if m.ndim == 4:
        m = m[:, 0]
    if m.ndim != 3:
        raise InputShapeError(f"masks must be (N, H, W) or (N, 1, H, W), got shape {m.shape}")
    binary = m > threshold if m.dtype.kind == "f" else m != 0
    order = np.arange(len(m)) if scores is None else np.argsort(_as_numpy(scores), kind="stable")
    labels = np.zeros(m.shape[1:], dtype=np.int32)
    for k in order:
        labels[binary[k]] = k + 1
    return labels


def match_iou(prediction: ArrayLike, truth: ArrayLike) -> np.ndarray:
    """IoU of every (true object, predicted object) pair, ``(n_true, n_pred)``, ids in ascending order."""
    import numpy as np

    pred, true = _as_numpy(prediction), _as_numpy(truth)
    if pred.shape != true.shape:
        raise InputShapeError(f"prediction {pred.shape} and truth {true.shape} label maps differ in shape")
    if pred.dtype.kind not in "iub" or true.dtype.kind not in "iub":
        raise ConfigError("label maps must hold integer ids (use label_components for probability masks)")
    _, p = np.unique(pred, return_inverse=True)  # dense ids, 0 stays 0 when background is present
    _, t = np.unique(true, return_inverse=True)
    p, t = p.reshape(-1), t.reshape(-1)
    p_bg, t_bg = int((pred == 0).any()), int((true == 0).any())
    n_p, n_t = int(p.max(initial=-1)) + 1, int(t.max(initial=-1)) + 1
    inter = np.bincount(t * n_p + p, minlength=n_t * n_p).reshape(n_t, n_p)
    area_t, area_p = inter.sum(axis=1), inter.sum(axis=0)
    inter = inter[t_bg:, p_bg:]  # drop the background row/column
    union = area_t[t_bg:, None] + area_p[None, p_bg:] - inter
    return inter / np.maximum(union, 1)


@dataclass(frozen=True)
class InstanceScores:
    """The Table V columns for one image (or their means over a set, from :func:`mean_scores`)."""

    dsb_score: float
    ap50: float
    precision: float  # TP / (TP + FP) at IoU > 0.5; 1 when nothing was predicted
    recall: float  # TP / (TP + FN) at IoU > 0.5; 1 when there was nothing to find
    iou: float  # semantic IoU of the union of objects
    dice: float  # semantic Dice of the union
    n_true: int
    n_pred: int


def _score_at(iou: np.ndarray, t: float) -> tuple[int, int, int]:
    tp = int((iou > t).sum())  # IoU > 0.5 makes matches one-to-one, so counting pairs counts matches
    return tp, iou.shape[1] - tp, iou.shape[0] - tp


def _ratio(num: int, den: int) -> float:
    return 1.0 if den == 0 else num / den


def instance_scores(prediction: ArrayLike, truth: ArrayLike) -> InstanceScores:
    """All instance and semantic scores of one image's label maps (see the module's definitions)."""
    import numpy as np

    iou = match_iou(prediction, truth)
    per_t = [_score_at(iou, t) for t in THRESHOLDS]
    scores = [_ratio(tp, tp + fp + fn) for tp, fp, fn in per_t]
    tp, fp, fn = per_t[0]
    p, t = _as_numpy(prediction) != 0, _as_numpy(truth) != 0
    inter, union, total = int((p & t).sum()), int((p | t).sum()), int(p.sum() + t.sum())
    return InstanceScores(
        dsb_score=float(np.mean(scores)),
        ap50=scores[0],
        precision=_ratio(tp, tp + fp),
        recall=_ratio(tp, tp + fn),
        iou=_ratio(inter, union),
        dice=_ratio(2 * inter, total),
        n_true=iou.shape[0],
        n_pred=iou.shape[1],
    )


def _pairs(prediction: ArrayLike | Sequence[ArrayLike], truth: ArrayLike | Sequence[ArrayLike]) -> list[tuple]:
    """One image (2-D maps), a stack ``(B, H, W)`` or sequences of maps -> list of (prediction, truth)."""
    single = not isinstance(prediction, (list, tuple)) and _as_numpy(prediction).ndim == 2
    if single:
        return [(prediction, truth)]
    preds, truths = list(prediction), list(truth)
    if len(preds) != len(truths):
        raise InputShapeError(f"{len(preds)} predicted label maps but {len(truths)} true ones")
    if not preds:
        raise InputShapeError("no label maps to score")
    return list(zip(preds, truths, strict=True))


def dsb_score(prediction: ArrayLike | Sequence[ArrayLike], truth: ArrayLike | Sequence[ArrayLike]) -> float:
    """The 2018 Data Science Bowl score: one image's label maps, or the mean over a set of images."""
    import numpy as np

    return float(np.mean([instance_scores(p, t).dsb_score for p, t in _pairs(prediction, truth)]))


def ap50(prediction: ArrayLike | Sequence[ArrayLike], truth: ArrayLike | Sequence[ArrayLike]) -> float:
    """TP / (TP + FP + FN) at IoU > 0.5, per image, averaged over images."""
    import numpy as np

    return float(np.mean([instance_scores(p, t).ap50 for p, t in _pairs(prediction, truth)]))


def mean_scores(scores: Sequence[InstanceScores]) -> InstanceScores:
    """Mean of each column over images (counts are summed): the per-set row of Table V."""
    import numpy as np

    if not scores:
        raise InputShapeError("no scores to average")
    rows = [asdict(s) for s in scores]
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if not k.startswith("n_")}
    return InstanceScores(**mean, n_true=sum(s.n_true for s in scores), n_pred=sum(s.n_pred for s in scores))
