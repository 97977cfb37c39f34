"""Evaluation metrics of UNet++: IoU, Dice, HD95, scores by object size, and instance scores (DSB 2018).

Zhou, Rahman Siddiquee, Tajbakhsh and Liang, "UNet++: Redesigning Skip Connections to Exploit
Multiscale Features in Image Segmentation", IEEE TMI 39(6), 2020, doi:10.1109/TMI.2019.2959609
(arXiv:1912.05074). The paper reports IoU and Dice per data set and, in Fig. 7, segmentation
quality by object size. HD95 is not in the paper; it is here because medical segmentation
benchmarks (BraTS, the Medical Segmentation Decathlon) report it next to Dice.

Pure functions over ``(B, C, *spatial)`` tensors; 2D and 3D share the code (reductions run over
``range(2, ndim)``). Inputs are read as follows:

- bool and integer tensors are hard masks: non-zero is foreground;
- floating tensors are probabilities: foreground where ``> threshold``. For several classes,
  thresholding each channel is not the argmax; use :func:`masks_from_logits` or :func:`one_hot`
  first to score the argmax label map.

Empty-mask conventions (tested):

- IoU and Dice: empty ground truth and empty prediction score **1.0** (nothing to find, nothing
  found); empty ground truth with a non-empty prediction, or the reverse, scores **0.0**.
- HD95: **inf** when exactly one of the two masks is empty (the distance to an empty set is
  infinite), **NaN** when both are (there is no surface to measure; IoU and Dice already score
  that case 1). Aggregate with ``torch.nanmean`` and count the infs separately.

One module per kind: :mod:`.overlap` (IoU, Dice), :mod:`.distance` (HD95), :mod:`.objects` (Fig. 7),
:mod:`.instances` (the DSB 2018 score, AP@0.5, object precision/recall of label maps). Only torch is
needed to import this package; :func:`hd95` uses medpy (or scipy when medpy is
missing) and the object-size functions use scipy, each imported when called.
"""

from .distance import hd95
from .instances import (
    InstanceScores,
    ap50,
    dsb_score,
    instance_scores,
    label_components,
    masks_to_label_map,
    match_iou,
    mean_scores,
)
from .objects import ObjectScores, SizeBin, by_object_size, object_scores
from .overlap import dice, iou, masks_from_labels, masks_from_logits, masks_from_probs, one_hot, pooled_dice, pooled_iou

__all__ = [
    "InstanceScores",
    "ObjectScores",
    "SizeBin",
    "ap50",
    "by_object_size",
    "dice",
    "dsb_score",
    "hd95",
    "instance_scores",
    "iou",
    "label_components",
    "masks_from_labels",
    "masks_from_logits",
    "masks_from_probs",
    "masks_to_label_map",
    "match_iou",
    "mean_scores",
    "object_scores",
    "one_hot",
    "pooled_dice",
    "pooled_iou",
]
