"""Open any model file for prediction, and run ONNX files with the model's own interface.

:func:`load_model` is the one entry point for every kind of model file unetpp writes:

* ``.pt`` (:func:`unetpp.save`), a run's ``best.ckpt``/``last.ckpt`` and ``.safetensors`` (+ JSON
  sidecar) are PyTorch models: :func:`unetpp.load` reads them all;
* ``.onnx`` (:func:`unetpp.deploy.export.export_onnx`, int8 copies too) runs in ONNX Runtime through
  :class:`OnnxRunner`, which looks like a model to :func:`unetpp.predict`.

onnxruntime is imported only when an ONNX file is opened.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from ..errors import CheckpointError, ConfigError, InputShapeError
from ..models import GridSpec, load
from ..models.checkpoint import CONFIG_KEY
from .segmenter import Segmenter

PathLike = str | os.PathLike[str]
ONNX_FORMAT = "unetpp.onnx"
INPUT_NAME = "image"  # the graph's one input; its outputs are head{j}


def load_model(path: PathLike) -> Segmenter:
    """Load a model file for prediction: ``.onnx`` in ONNX Runtime, anything else with :func:`unetpp.load`.

    Raises:
        CheckpointError: missing, corrupt or foreign file (the file is named).
    """
    if Path(path).name.lower().endswith(".onnx"):
        return OnnxRunner(path)
    return load(path)


class OnnxRunner:
    """Runs an ONNX file written by :func:`unetpp.deploy.export.export_onnx` with the model's interface.

    ``runner(x, head=None)`` returns the logits of every head, or of head `head`, as a list of
    ``(B, classes, *spatial)`` tensors, and ``spec``, ``in_channels``, ``classes`` and ``spatial_dims``
    come from the file's metadata, so :func:`unetpp.predict` takes a runner where it takes a model.
    ``head=d`` picks one output of the graph but still computes them all: export a pruned model when
    only head d is wanted.

    Args:
        path: the ``.onnx`` file (float32, or int8 from :func:`unetpp.deploy.export.quantize_onnx`).
        threads: intra-op threads; default ``torch.get_num_threads()``, so both engines compare fairly.
        providers: ONNX Runtime execution providers.

    Raises:
        CheckpointError: missing, unreadable, or not written by unetpp (no config in its metadata).

    Example:
        >>> runner = OnnxRunner("unetpp_l3.onnx")
        >>> [y.shape for y in runner(torch.randn(1, 1, 96, 96))]
        [torch.Size([1, 1, 96, 96])]
    """

    def __init__(
        self, path: PathLike, *, threads: int | None = None, providers: Sequence[str] = ("CPUExecutionProvider",)
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise CheckpointError(f"{self.path}: no such ONNX file; check the path")
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise CheckpointError(
                f"{self.path}: running ONNX files needs onnxruntime; pip install 'unetpp[export]'"
            ) from e
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: shape-inference notes would go to stderr
        # idle threads sleep instead of spinning: spinning ones slow whatever runs next (window blending,
        # another runtime being timed) by up to 7x on a 2-core machine
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=list(providers))
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph/... types
            reason = " ".join(str(e).split())[:200]  # onnxruntime's messages span lines
            raise CheckpointError(
                f"{self.path}: not a readable ONNX model ({type(e).__name__}: {reason}); re-export it"
            ) from e
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        if CONFIG_KEY not in self.metadata:
            raise CheckpointError(f"{self.path}: ONNX file has no unetpp config in its metadata; export it with unetpp")
        try:
            config = json.loads(self.metadata[CONFIG_KEY])
            self.spec = GridSpec.from_dict(config["spec"])
            self.in_channels = int(config["in_channels"])
            self.classes = int(config["classes"])
            self.spatial_dims = int(config["spatial_dims"])
        except json.JSONDecodeError as e:
            raise CheckpointError(
                f"{self.path}: the unetpp config in its ONNX metadata is not valid JSON ({e.msg}); re-export it"
            ) from None
        except (TypeError, KeyError, ValueError, AttributeError, ConfigError) as e:
            raise CheckpointError(
                f"{self.path}: the unetpp config in its ONNX metadata is incomplete or wrong "
                f"({type(e).__name__}: {e}); re-export it"
            ) from None
        self.config: dict[str, object] = config
        self.outputs = [o.name for o in self.session.get_outputs()]

    @property
    def depth(self) -> int:
        return self.spec.depth

    def eval(self) -> OnnxRunner:
        return self

    def __repr__(self) -> str:
        return f"OnnxRunner({str(self.path)!r}, heads={list(self.spec.heads)})"

    def __call__(self, x: Tensor, head: int | None = None) -> list[Tensor]:
        """Logits of every head (or of `head`), ``(B, classes, *spatial)`` float32 CPU tensors.

        Raises:
            ConfigError: `head` is not one of the model's heads.
            InputShapeError: wrong rank, channels, or a spatial size not divisible by 2^depth.
        """
        m = 2**self.depth
        if x.ndim != self.spatial_dims + 2 or x.shape[1] != self.in_channels or any(s % m for s in x.shape[2:]):
            raise InputShapeError(
                f"{self.path.name} takes (B, {self.in_channels}, *spatial) with {self.spatial_dims} spatial sizes "
                f"divisible by {m}, got shape {tuple(x.shape)}; unetpp.predict pads for you"
            )
        if head is not None and head not in self.spec.heads:
            raise ConfigError(f"{self.path}: head={head} does not exist; the model has heads {list(self.spec.heads)}")
        names = self.outputs if head is None else [self.outputs[self.spec.heads.index(head)]]
        arr = x.detach().to("cpu", torch.float32).contiguous().numpy()
        return [torch.from_numpy(y) for y in self.session.run(names, {INPUT_NAME: arr})]


__all__ = ["INPUT_NAME", "ONNX_FORMAT", "OnnxRunner", "load_model"]
