"""unetpp: UNet++ and its family (Zhou et al., IEEE TMI 2019, doi:10.1109/TMI.2019.2959609).

Build, train, prune, save, load and run every variant of the paper on one nested grid, in 2D and 3D.
Importing this package needs only torch; training, data and export live in sub-packages with extras.
"""

from . import predict as _deprecated_predict_module  # noqa: F401  (imported first: see the note below)
from .errors import CheckpointError, ConfigError, DataError, ExportError, InitError, InputShapeError, UnetppError
from .inference import predict
from .losses import DeepSupervisionLoss, HybridLoss
from .models import GridSpec, NestedUNet, build_model, ensemble, list_models, load, prune, save
from .models.hub import from_pretrained, save_pretrained

# `unetpp.predict` is the function. The old module unetpp/predict.py (now a deprecated alias of
# unetpp.inference) is imported above, before the function is bound: importing a submodule for the
# first time sets the package attribute of its name, which would otherwise replace the function.

__version__ = "0.1.0"

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
