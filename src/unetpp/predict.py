"""Deprecated: prediction moved to :mod:`unetpp.inference`.

``from unetpp.predict import predict_files`` (and ``Predictor``, ``predict``) still works, with a
``DeprecationWarning``; write ``from unetpp.inference import predict_files`` instead.
``unetpp.predict(model, image)``, the function, is unchanged.
"""

from __future__ import annotations

import warnings
from typing import Any

_MOVED = ("predict_files", "Predictor", "predict")


def __getattr__(name: str) -> Any:
    # Resolved on access (PEP 562), so that `import unetpp` can import this module without a warning:
    # it does so to keep `unetpp.predict` the function once a user imports this module too.
    if name in _MOVED:
        warnings.warn(
            f"unetpp.predict.{name} moved to unetpp.inference; use `from unetpp.inference import {name}`",
            DeprecationWarning,
            stacklevel=2,
        )
        from . import inference

        return getattr(inference, name)
    raise AttributeError(f"module 'unetpp.predict' has no attribute {name!r}; see unetpp.inference")


def __dir__() -> list[str]:
    return sorted(_MOVED)
