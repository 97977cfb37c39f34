"""Instance segmentation: Mask R-CNN and Mask R-CNN++ (UNet++'s nested pyramid) on torchvision.

Importing this package imports torchvision and timm; ``import unetpp`` does not import it, and
``unetpp.build_model("maskrcnn++", ...)`` imports it only when a detector is built.
"""

from .checkpoint import load, save
from .export import export_detector
from .model import PYRAMIDS, Detector, NativeScale, PyramidBackbone, build_detector
from .pyramid import NestedPyramid, last_nodes, pyramid_spec

__all__ = [
    "PYRAMIDS",
    "Detector",
    "NativeScale",
    "NestedPyramid",
    "PyramidBackbone",
    "build_detector",
    "export_detector",
    "last_nodes",
    "load",
    "pyramid_spec",
    "save",
]
