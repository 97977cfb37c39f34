"""Inference: the paper's modes (ensemble, one head, pruned) on images and files of any size.

* :mod:`~unetpp.inference.window`: N-D sliding window, importance map, flip TTA (tensors only);
* :mod:`~unetpp.inference.predictor`: modes, precision, :class:`Predictor` and :func:`predict`;
* :mod:`~unetpp.inference.runtimes`: :func:`load_model` for every model file, :class:`OnnxRunner`;
* :mod:`~unetpp.inference.batch`: :func:`predict_files` (find inputs, plan outputs, write masks).

Importing this package needs torch only (no Lightning, no image libraries, no ONNX Runtime).

Example:
    >>> from unetpp.inference import load_model, predict_files
    >>> predict_files(load_model("runs/em/checkpoints/best.ckpt"), "scans/*.png", "masks", head=2)
"""

from .batch import predict_files
from .outputs import Written, find_inputs
from .predictor import PRECISIONS, Precision, Predictor, Segmenter, bf16_supported, parse_mode, predict
from .preprocess import match_channels
from .runtimes import OnnxRunner, load_model
from .window import auto_window, importance_map, sliding_window, window_starts, with_flips

__all__ = [
    "PRECISIONS",
    "OnnxRunner",
    "Precision",
    "Predictor",
    "Segmenter",
    "Written",
    "auto_window",
    "bf16_supported",
    "find_inputs",
    "importance_map",
    "load_model",
    "match_channels",
    "parse_mode",
    "predict",
    "predict_files",
    "sliding_window",
    "window_starts",
    "with_flips",
]
