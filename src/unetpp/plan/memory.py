"""Peak memory of training (or inference) for any member of the family, before anything is allocated.

nnU-Net (Isensee et al., Nat. Methods 2021) sizes patch and batch by a GPU-memory model so that the
first run fits; this is the same idea for the whole UNet++ family, 2D and 3D, CPU and GPU.

The model of a training step's peak, above the process's state before the model is built:

* **activations**: the bytes autograd keeps for backward. They are counted, not guessed: the model
  is built on PyTorch's ``meta`` device (shapes only, no memory, no compute) and one forward pass
  runs under :func:`torch.autograd.graph.saved_tensors_hooks`, which sees every tensor saved for
  backward (conv inputs, concatenations, norm inputs, ReLU outputs, pooling indices...). Each storage
  counts once. This follows the code as it is, for every variant, width, depth and encoder.
* **weights**: parameters, their gradients and Adam's two moments: 4 copies in float32.
* **loss**: sigmoid/softmax, target and Dice terms per head, about ``LOSS_TENSORS_PER_HEAD`` full-size
  tensors of ``classes`` channels.
* **runtime**: what the first convolution and backward cost whatever the size (oneDNN/cuDNN code and
  workspaces, allocator slack).

Inference (``training=False``) is the weights plus the largest set of feature maps alive at once as
the forward loop runs and frees them (see ``NestedUNet.forward``), plus a runtime constant; checked
against :func:`unetpp.profiling.peak_memory_mib`.

The last three constants were fitted to peaks measured with :func:`measure_peak_bytes` on this
project's CPU machine: UNet++ and U-Net, widths 8-512, 2D 64²-128² (batch 4-16) and 3D 32³-48³
(batch 2), 1 and 3 classes; the fit is within 4% on all nine (tests/plan/test_memory.py checks 30%).
Mixed precision is estimated as float32, an upper bound. GPU figures use the same counts with a
larger runtime constant (CUDA context and cuDNN workspace), not calibrated here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from ..errors import ConfigError, InputShapeError

MIB = 2**20
GB = 1e9
RUNTIME_BYTES = {"cpu": 228 * MIB, "cuda": 900 * MIB}  # measured on CPU; CUDA: context + cuDNN workspace (guess)
ACTIVATION_FACTOR = 1.05  # gradient buffers in flight during backward, beyond the saved tensors
LOSS_TENSORS_PER_HEAD = 3.8  # full-size float32 tensors of `classes` channels per supervised head
WEIGHT_COPIES = 4  # weights, gradients, Adam's exp_avg and exp_avg_sq
INFERENCE_RUNTIME_BYTES = {"cpu": 24 * MIB, "cuda": 600 * MIB}  # first forward's code and workspace


def model_kwargs(model_config: Any) -> dict[str, Any]:
    """``build_model`` keyword arguments from a ModelConfig-like object (``build_kwargs()``) or a mapping."""
    if hasattr(model_config, "build_kwargs"):
        kw = dict(model_config.build_kwargs())
    elif isinstance(model_config, Mapping):
        kw = dict(model_config)
    else:
        raise ConfigError(f"model_config must be a mapping of build_model arguments, got {type(model_config).__name__}")
    kw.setdefault("name", "unet++")
    if kw.get("widths") is not None:
        kw["widths"] = tuple(int(w) for w in kw["widths"])
    if kw.get("encoder") is not None:
        kw["encoder_weights"] = None  # never download weights to count shapes
    return kw


def estimate_peak_bytes(
    model_config: Any,
    patch: Sequence[int],
    batch: int,
    training: bool = True,
    precision: str = "32",
    device: str = "cpu",
) -> int:
    """Estimated peak memory (bytes) of one training step (or one inference pass) of a batch of patches.

    Args:
        model_config: ``build_model`` arguments (a mapping, or an object with ``build_kwargs()`` such as
            :class:`unetpp.config.ModelConfig`).
        patch: spatial size of the input, e.g. ``(96, 96)`` or ``(64, 64, 64)``.
        batch: images per step.
        training: forward + backward + Adam step; False: an inference pass (no gradients).
        precision: "32", "bf16" or "16"; mixed precision is estimated as float32 (upper bound).
        device: "cpu" or "cuda" (sets the runtime constant).

    Raises:
        ConfigError: a configuration the model refuses (e.g. a patch not divisible by 2^depth).
    """
    del precision  # float32 accounting is an upper bound for bf16/16-mixed
    if batch < 1:
        raise ConfigError(f"batch must be >= 1, got {batch}")
    kw = model_kwargs(model_config)
    prof = _profile(json.dumps(kw, sort_keys=True), tuple(int(p) for p in patch))
    runtime = RUNTIME_BYTES["cuda" if str(device).startswith("cuda") else "cpu"]
    weights = 4 * prof["params"]
    voxels = math.prod(patch)
    if not training:
        runtime = INFERENCE_RUNTIME_BYTES["cuda" if str(device).startswith("cuda") else "cpu"]
        return int(runtime + weights + batch * prof["inference_live"])
    loss = LOSS_TENSORS_PER_HEAD * prof["heads"] * prof["classes"] * voxels * 4
    data = voxels * (4 * prof["in_channels"] + 8)  # the float32 batch and its int64 mask
    per_sample = ACTIVATION_FACTOR * prof["saved"] + loss + data
    return int(runtime + WEIGHT_COPIES * weights + batch * per_sample)


@lru_cache(maxsize=256)
def _profile(kw_json: str, patch: tuple[int, ...]) -> dict[str, int]:
    """Per-sample saved bytes, live inference bytes, parameter count and heads of a model at a patch size."""
    import torch

    from ..models import build_model

    kw = json.loads(kw_json)
    if kw.get("widths") is not None:
        kw["widths"] = tuple(kw["widths"])
    with torch.device("meta"):
        model = build_model(**kw)
    if len(patch) != model.spatial_dims:
        raise ConfigError(f"patch {list(patch)} has {len(patch)} axes but the model is {model.spatial_dims}-D")
    model.train()
    params = {id(p) for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if id(t) not in params:
            base = t._base if t._base is not None else t  # a view counts as the storage it views
            saved[id(base)] = max(saved.get(id(base), 0), base.numel() * base.element_size())
        return t

    batch = 2  # batch norm refuses a single value per channel; everything scales linearly in the batch
    x = torch.zeros((batch, model.in_channels, *patch), device="meta")
    try:
        model.check_input(x)
    except InputShapeError as e:
        raise ConfigError(f"patch {list(patch)}: {e}") from e
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        heads = model(x)
    del heads
    return {
        "saved": sum(saved.values()) // batch,
        "inference_live": _inference_live(model, patch),
        "params": sum(p.numel() for p in model.parameters()),
        "heads": len(model.spec.heads),
        "classes": model.classes,
        "in_channels": model.in_channels,
    }


def _inference_live(model: Any, patch: tuple[int, ...]) -> int:
    """Largest set of float32 feature maps alive at once in an inference pass of one sample (bytes).

    Follows the forward loop: every encoder level stays alive until its last reader; a decoder node
    holds its up-sampled input, the concatenation and two block outputs while it runs.
    """
    spec = model.spec
    enc_w = model.encoder.widths
    size = [math.prod(p // 2**i for p in patch) for i in range(spec.depth + 1)]
    order = spec.order()
    last_read: dict[tuple[int, int], int] = {}
    for step, node in enumerate(order):
        for p in spec.predecessors(node):
            last_read[p] = step
    keep = {(0, j) for j in spec.heads}
    live = {(i, 0): w * size[i] for i, w in enumerate(enc_w)}  # the encoder returns every level at once
    peak = sum(live.values()) + (model.in_channels + 2 * enc_w[0]) * size[0]
    for step, node in enumerate(order):
        i, width = node[0], spec.widths[node[0]]
        running = (width + spec.in_channels(node, enc_w) + 2 * width) * size[i]  # up, concat, two block outputs
        peak = max(peak, sum(live.values()) + running)
        live[node] = width * size[i]
        for p in [p for p in live if last_read.get(p) == step and p not in keep]:
            del live[p]
    heads = len(spec.heads) * model.classes * size[0]
    return 4 * (peak + heads)


def needs_recompute(
    model_config: Any, patch: Sequence[int], batch: int, budget: float, precision: str = "32", device: str = "cpu"
) -> tuple[bool, int, int]:
    """Whether `batch` at `patch` needs memory-efficient training to fit `budget` (bytes), with both peaks.

    Returns ``(over, stored, recomputed)``: `over` is True when the stored (normal) training peak is over the
    budget; the plan and the memory guard then turn recomputation on (the guard only if it then fits).
    """
    kw = model_kwargs(model_config)
    stored = estimate_peak_bytes({**kw, "memory_efficient": False}, patch, batch, True, precision, device)
    if stored <= budget:
        return False, stored, stored
    return True, stored, estimate_peak_bytes({**kw, "memory_efficient": True}, patch, batch, True, precision, device)


def fit_batch(
    model_config: Any,
    patch: Sequence[int],
    budget_bytes: float,
    cap: int = 16,
    precision: str = "32",
    device: str = "cpu",
    reserved: float = 0.0,
) -> int:
    """The largest batch size <= `cap` whose estimated training peak, plus `reserved` bytes, fits `budget_bytes`.

    `reserved` is memory the run needs besides the training step (data cache, loader workers).

    Raises:
        ConfigError: not even batch 1 fits; one line naming the estimate, the budget, and a patch size
            or model width that would fit.
    """
    if cap < 1:
        raise ConfigError(f"the batch size cap must be >= 1, got {cap}")
    one = estimate_peak_bytes(model_config, patch, 1, True, precision, device) + reserved
    if one > budget_bytes:
        if one - reserved <= budget_bytes:  # the model fits; the data loading around it does not (--workers 48)
            fix = (
                f"{reserved / GB:.2f} GB of it is data loading (worker processes, cached images): lower --workers "
                "(data.num_workers) or set data.cache=false"
            )
        else:
            fix = _what_fits(model_config, patch, budget_bytes - reserved, precision, device)
        raise ConfigError(
            f"training {_describe(model_config)} on {'x'.join(map(str, patch))} patches needs about "
            f"{one / GB:.2f} GB at batch 1, over the memory budget of {budget_bytes / GB:.2f} GB; {fix}"
        )
    two = estimate_peak_bytes(model_config, patch, 2, True, precision, device) + reserved
    step = two - one  # the estimate is linear in the batch
    return int(max(1, min(cap, 1 + (budget_bytes - one) // step))) if step > 0 else cap


def _describe(model_config: Any) -> str:
    kw = model_kwargs(model_config)
    widths = kw.get("widths")
    return f"{kw['name']} (depth {kw.get('depth', 4)}{f', widths {list(widths)}' if widths else ''})"


def _what_fits(model_config: Any, patch: Sequence[int], budget: float, precision: str, device: str) -> str:
    """The advice of the error: a smaller patch, else narrower widths, else more memory."""
    kw = model_kwargs(model_config)
    multiple = 2 ** int(kw.get("depth") or 4)
    smaller = list(patch)
    while True:
        axis = max(range(len(smaller)), key=lambda a: smaller[a])
        if smaller[axis] // 2 < multiple * 2:
            break
        smaller[axis] = smaller[axis] // 2 // multiple * multiple
        if estimate_peak_bytes(kw, smaller, 1, True, precision, device) <= budget:
            return f"data.patch_size={smaller} with data.batch_size=1 would fit, or raise --memory-gb"
    widths = kw.get("widths")
    if widths:
        half = [max(1, w // 2) for w in widths]
        if estimate_peak_bytes({**kw, "widths": half}, patch, 1, True, precision, device) <= budget:
            return f"model.widths={half} would fit at batch 1, or raise --memory-gb"
    return "no smaller patch or width fits; raise --memory-gb"


# --------------------------------------------------------------------------------------------- measuring


def measure_peak_bytes(
    model_config: Any, patch: Sequence[int], batch: int, steps: int = 2, threads: int | None = None
) -> int | None:
    """Measured peak resident memory (bytes) of `steps` CPU training steps, in a fresh subprocess.

    :func:`unetpp.profiling.peak_memory_mib` in training mode (forward + hybrid deep-supervision loss +
    backward + Adam step), counted from before the model is loaded, so weights, gradients and Adam's
    state are included. ``None`` off Linux or when the probe fails (logged).
    """
    from ..models import build_model
    from ..profiling import peak_memory_mib

    kw = model_kwargs(model_config)
    if kw.get("widths") is not None:
        kw["widths"] = tuple(kw["widths"])
    model = build_model(**kw)
    shape = (batch, model.in_channels, *(int(p) for p in patch))
    mib = peak_memory_mib(model, shape, training=True, with_weights=True, steps=steps, threads=threads)
    return None if mib is None else int(mib * MIB)


def check_inference_room(model: Any, shape: Sequence[int], option: str = "--shape") -> None:
    """Refuse an input `shape` ``(B, C, *spatial)`` whose inference pass would not fit the memory there is.

    For a built NestedUNet (others are not estimated): input, weights and the largest set of live feature maps.

    Raises:
        ConfigError: naming `option`, the shape, the estimate and the memory available.
    """
    from ..utils.system import memory_budget_bytes

    if not hasattr(model, "spec") or len(shape) < 3:
        return
    batch, patch = int(shape[0]), tuple(int(s) for s in shape[2:])
    weights = 4 * sum(p.numel() for p in model.parameters())
    need = INFERENCE_RUNTIME_BYTES["cpu"] + weights + 4 * math.prod(shape) + batch * _inference_live(model, patch)
    room = memory_budget_bytes("cpu")
    if need > room:
        raise ConfigError(
            f"{option} {'x'.join(map(str, shape))}: one pass needs about {need / GB:.1f} GB, over the "
            f"{room / GB:.1f} GB available; use a smaller batch or size"
        )
