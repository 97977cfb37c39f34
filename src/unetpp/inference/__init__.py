"""Inference: the paper's modes (ensemble, one head, pruned) on images and files of any size.

* :mod:`~unetpp.inference.segmenter`: the :class:`Segmenter` protocol, what prediction needs from a model;
* :mod:`~unetpp.inference.window`: N-D sliding window, importance map, flip TTA (tensors only);
* :mod:`~unetpp.inference.predictor`: :class:`PredictOptions` (checked once) and :class:`Predictor`;
* :mod:`~unetpp.inference.runtimes`: :func:`load_model` for every model file, :class:`OnnxRunner`;
* :mod:`~unetpp.inference.preprocess`: the training's preprocessing, repeated from the checkpoint;
* :mod:`~unetpp.inference.outputs` and :mod:`~unetpp.inference.batch`: inputs found, outputs named and
  checked before work, masks written.

Importing this package needs torch only (no Lightning, no image libraries, no ONNX Runtime). Other
runtimes (ONNX Runtime, OpenVINO, the automatic choice) and the one-liner :func:`unetpp.predict` are in
:mod:`unetpp.deploy`.

Example:
    >>> from unetpp.inference import PredictOptions, Predictor
    >>> Predictor("runs/em/checkpoints/best.ckpt", PredictOptions(head=2)).predict_files("scans/*.png", "masks")
"""

from .batch import FileOptions
from .outputs import Written, find_inputs
from .predictor import PRECISIONS, Precision, PredictOptions, Predictor, bf16_supported, parse_mode, predict_files
from .preprocess import match_channels
from .runtimes import OnnxRunner, load_model
from .segmenter import RUNTIMES, Runtime, Segmenter
from .window import auto_window, importance_map, sliding_window, window_starts, with_flips

__all__ = [
    "PRECISIONS",
    "FileOptions",
    "RUNTIMES",
    "OnnxRunner",
    "Precision",
    "PredictOptions",
    "Predictor",
    "Runtime",
    "Segmenter",
    "Written",
    "auto_window",
    "bf16_supported",
    "find_inputs",
    "importance_map",
    "load_model",
    "match_channels",
    "parse_mode",
    "predict_files",
    "sliding_window",
    "window_starts",
    "with_flips",
]
