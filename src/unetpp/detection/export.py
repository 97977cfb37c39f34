"""Export a trained detector as a TorchScript file (``torch.jit.trace``), and why that way.

What torchvision's Mask R-CNN allows, measured with torch 2.14 / torchvision 0.29 on both
detectors (``tests/detection/test_export.py`` checks the traced file against eager):

- ``torch.export.export``: fails in eval mode. ``torchvision.ops.batched_nms`` branches on the
  number of boxes (``boxes.numel() > 4000``), a data-dependent size that ``torch.export`` cannot
  guard on (``GuardOnDataDependentSymNode``). The dense part (backbone + pyramid) exports fine,
  but the detector is not usable without RPN, NMS and RoIAlign.
- ``torch.jit.script``: fails. torchvision's own heads are scriptable, but the timm body and the
  nested pyramid (ModuleDict indexed by grid coordinates computed at run time, as in the
  segmentation models) are not, and rewriting them for a deprecated frontend is not worth it.
- ``torch.jit.trace``: works. torchvision has tracing-aware code paths (written for its ONNX
  export), so the traced graph keeps a variable number of detections and any input size;
  outputs equal eager to 1e-4. The traced module takes one image ``(C, H, W)`` in [0, 1] and
  returns ``(boxes, labels, scores, masks)``; load it with ``torch.jit.load(path)`` -- no Python
  class of this project is needed.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..utils.atomic import atomic_write
from .model import Detector


class SingleImage(nn.Module):
    """One image in, four tensors out: the signature a trace (and a deployment) needs."""

    def __init__(self, model: Detector) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        det = self.model([image])[0]
        return det["boxes"], det["labels"], det["scores"], det["masks"]


def export_detector(
    model: Detector, path: str | os.PathLike[str], example: Tensor | None = None, *, overwrite: bool = False
) -> Path:
    """Trace `model` (in eval mode) to a TorchScript file that runs without this package.

    Args:
        model: a Mask R-CNN or Mask R-CNN++ from :func:`~.model.build_detector` or :func:`~.checkpoint.load`.
        path: the ``.pt`` file to write (atomically; an existing file is kept unless `overwrite`).
        example: one image ``(C, H, W)`` to trace with; default random at ``min_size`` squared (256 at native scale).

    Raises:
        ConfigError: an example of the wrong shape.
        DataError: the file exists and `overwrite` is False.
    """
    channels = model.config["in_channels"]
    if example is None:
        size = int(model.config["min_size"] or 256)  # None: native scale, any size traces
        example = torch.rand(channels, size, size, generator=torch.Generator().manual_seed(0))
    if example.ndim != 3 or example.shape[0] != channels:
        raise ConfigError(f"example must be one image ({channels}, H, W), got shape {tuple(example.shape)}")
    was_training = model.training
    wrapper = SingleImage(model.eval())
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # torchvision's shape arithmetic
            traced = torch.jit.trace(wrapper, (example,), check_trace=False)
    finally:
        model.train(was_training)
    return atomic_write(path, lambda tmp: torch.jit.save(traced, str(tmp)), overwrite=overwrite)
