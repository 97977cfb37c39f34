"""Importing ``torch._dynamo`` in a napari session without loading Triton after Mesa's LLVM (a crash)."""

from __future__ import annotations

import sys
import threading

_import_lock = threading.Lock()


def import_dynamo_safely() -> None:
    """Import ``torch._dynamo`` without Triton where Mesa's LLVM is loaded (software OpenGL, as under Xvfb).

    torch imports ``torch._dynamo``, and with it Triton when installed (PyPI's torch on Linux brings it),
    the first time an optimizer is built or a model exported (the sample's training, ``--runtime auto``).
    Triton's own LLVM kills the process (a segmentation fault) when it loads after Mesa's ``libLLVM``,
    which napari's OpenGL canvas has loaded by then. Triton compiles GPU kernels, which the plugin never
    uses: it is hidden from that one import, so torch records it as missing instead of crashing.
    """
    if "torch._dynamo" in sys.modules or "triton" in sys.modules:
        return
    try:
        with open("/proc/self/maps") as f:  # Linux; elsewhere there is no Mesa to clash with
            if "libLLVM" not in f.read():
                return
    except OSError:
        return
    with _import_lock:
        sys.modules["triton"] = None  # type: ignore[assignment]  (import triton -> ImportError)
        try:
            import torch._dynamo  # noqa: F401
        finally:
            if "triton" in sys.modules and sys.modules["triton"] is None:
                del sys.modules["triton"]


__all__ = ["import_dynamo_safely"]
