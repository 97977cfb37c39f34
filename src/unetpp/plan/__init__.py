"""The data fingerprint and the memory-aware training plan (nnU-Net's idea, for the whole UNet++ family).

``fingerprint(dataset)`` summarises a data set; ``make_plan(fp, model_name, memory_gb)`` turns it into
a :class:`Plan` (channels, classes, mask threshold, patch, depth, batch for the memory budget,
normalisation, resampling); ``format_plan`` prints it and ``save_plan`` writes ``plan.yaml``.
"""

from .fingerprint import Fingerprint, fingerprint
from .memory import estimate_peak_bytes, fit_batch
from .record import Plan, format_plan, load_plan, save_plan
from .rules import make_plan

__all__ = [
    "Fingerprint",
    "Plan",
    "estimate_peak_bytes",
    "fingerprint",
    "fit_batch",
    "format_plan",
    "load_plan",
    "make_plan",
    "save_plan",
]
