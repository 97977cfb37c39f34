"""unetpp: UNet++ and its family (Zhou et al., IEEE TMI 2019, doi:10.1109/TMI.2019.2959609).

Build, train, prune, save, load and run every variant of the paper on one nested grid, in 2D and 3D.
Importing this package needs only torch; training, data and export live in sub-packages with extras.
"""

from .deploy.backends import predict
from .errors import CheckpointError, ConfigError, DataError, ExportError, InitError, InputShapeError, UnetppError
from .losses import DeepSupervisionLoss, HybridLoss
from .models import GridSpec, NestedUNet, build_model, ensemble, list_models, load, prune, save
from .models.hub import from_pretrained, save_pretrained
from .utils.version import __version__ as __version__

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "DeepSupervisionLoss",
    "ExportError",
    "GridSpec",
    "HybridLoss",
    "InitError",
    "InputShapeError",
    "NestedUNet",
    "UnetppError",
    "build_model",
    "ensemble",
    "from_pretrained",
    "list_models",
    "load",
    "predict",
    "prune",
    "save",
    "save_pretrained",
]
