"""One set of names for numeric precision across the API and the CLI: ``"32"``, ``"bf16"``, ``"16"``.

Training hands them to Lightning as ``"32-true"``/``"bf16-mixed"``/``"16-mixed"``; inference runs bf16
as CPU/GPU autocast. The spellings used before (``float32``/``bfloat16``, Lightning's own) still work,
with a warning that names the new one.
"""

from __future__ import annotations

import warnings
from typing import Literal

import torch

from .errors import ConfigError

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
