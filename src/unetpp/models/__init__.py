"""The UNet++ model family on one nested grid."""

from .checkpoint import load, save
from .grid import GridSpec
from .nested import NestedUNet
from .pruning import ensemble, heads_and_ensemble, prune
from .registry import build_model, list_models, register_model

__all__ = [
    "GridSpec",
    "NestedUNet",
    "build_model",
    "ensemble",
    "heads_and_ensemble",
    "list_models",
    "load",
    "prune",
    "register_model",
    "save",
]
