"""unetpp: UNet++ and its family (Zhou et al., IEEE TMI 2019, doi:10.1109/TMI.2019.2959609).

Build, prune, save and load every variant of the paper on one nested grid, in 2D and 3D.
"""

from .errors import CheckpointError, ConfigError, DataError, InputShapeError, UnetppError
from .models import GridSpec, NestedUNet, build_model, ensemble, list_models, load, prune, save

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "GridSpec",
    "InputShapeError",
    "NestedUNet",
    "UnetppError",
    "build_model",
    "ensemble",
    "list_models",
    "load",
    "prune",
    "save",
]
