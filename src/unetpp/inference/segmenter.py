"""What prediction needs from a model, whatever runs it: the :class:`Segmenter` protocol.

A NestedUNet (eager PyTorch), an :class:`~unetpp.inference.runtimes.OnnxRunner` (an ONNX file) and a
model in another runtime (:class:`unetpp.deploy.backends.RuntimeModel`) all fit, so
:class:`~unetpp.inference.predictor.Predictor` runs any of them and never needs to know which.
"""

from __future__ import annotations

from typing import Literal, Protocol

from torch import Tensor

from ..models import GridSpec

Runtime = Literal["auto", "torch", "onnxruntime", "openvino"]
RUNTIMES: tuple[str, ...] = ("auto", "torch", "onnxruntime", "openvino")


class Segmenter(Protocol):
    """``__call__(x, head=None)`` returns the logits of every head (or of head ``head`` only) as a list of
    ``(B, classes, *spatial)`` tensors; ``spec``, ``in_channels``, ``classes`` and ``spatial_dims`` say what
    it takes and gives.
    """

    spec: GridSpec
    in_channels: int
    classes: int
    spatial_dims: int

    def __call__(self, x: Tensor, head: int | None = None) -> list[Tensor]: ...


__all__ = ["RUNTIMES", "Runtime", "Segmenter"]
