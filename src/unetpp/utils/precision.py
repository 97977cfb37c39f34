"""One set of names for numeric precision across the API and the CLI: ``"32"``, ``"bf16"``, ``"16"``.

Training hands them to Lightning as ``"32-true"``/``"bf16-mixed"``/``"16-mixed"``; inference runs bf16
as CPU/GPU autocast. The spellings used before (``float32``/``bfloat16``, Lightning's own) still work,
with a warning that names the new one.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Literal

import torch

from ..errors import ConfigError

Precision = Literal["32", "bf16", "16"]
PRECISIONS: tuple[str, ...] = ("32", "bf16", "16")
OLD_NAMES = {"32-true": "32", "bf16-mixed": "bf16", "16-mixed": "16", "float32": "32", "bfloat16": "bf16"}
LIGHTNING_NAMES = {"32": "32-true", "bf16": "bf16-mixed", "16": "16-mixed"}


def canonical_precision(value: object, allowed: tuple[str, ...] = PRECISIONS, where: str = "precision") -> str:
    """`value` in the project's spelling (an old spelling is translated with a FutureWarning).

    Raises:
        ConfigError: a value that is not one of `allowed` in any spelling.
    """
    text = str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else None
    if text in OLD_NAMES:
        warnings.warn(f"{where}={text!r} is now spelled {OLD_NAMES[text]!r}", FutureWarning, stacklevel=3)
        text = OLD_NAMES[text]
    if text not in allowed:
        raise ConfigError(f"{where}: got {value!r}; expected one of {', '.join(repr(a) for a in allowed)}")
    return text


def bf16_supported() -> bool:
    """True when this CPU has native bfloat16 (AVX512-BF16 or AMX); elsewhere bfloat16 is emulated and slow."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


VECTOR_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")  # what decides a CPU's fast paths here


def cpu_flags() -> tuple[str, ...]:
    """The :data:`VECTOR_FLAGS` this CPU reports in ``/proc/cpuinfo`` (empty where that file is missing)."""
    path = Path("/proc/cpuinfo")
    text = path.read_text() if path.exists() else ""
    have = set(next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), []))
    return tuple(f for f in VECTOR_FLAGS if f in have)


def training_precision(device: str) -> tuple[str, str]:
    """The precision to train in on `device` ("cpu" or "cuda") when the user chose none, and the reason.

    bf16 autocast where the hardware has it natively: UNet++'s training step measured 1.7-1.9x float32's
    speed on a CPU with AVX512-BF16 and 3.1-3.3x with AMX (benchmarks/RESULTS.md), at about half the
    memory. Elsewhere bf16 is emulated and slower than float32, so float32 stays.
    """
    if device == "cuda":
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return "bf16", "this GPU computes in bf16: mixed precision"
        return "16", "this GPU has no bf16: float16 mixed precision"
    if bf16_supported():
        native = [f for f in cpu_flags() if "bf16" in f] or ["native bf16"]
        return "bf16", f"this CPU has {'+'.join(native)}: bf16 autocast trains about 2-3x faster than float32"
    return "32", "this CPU has no native bf16 (emulated bf16 is slower than float32)"
