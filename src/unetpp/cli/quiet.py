"""A clean first screen: library chatter (Lightning's tips and device lines, deprecation notes) off while a
command runs, unless ``--verbose``. Scoped to the command: levels and filters are restored afterwards."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

# loggers whose INFO lines (tips such as "litlogger", "GPU available: False", "Seed set") are not unetpp's
CHATTY_LOGGERS = ("lightning.pytorch", "lightning.fabric", "lightning", "torchio")
# warnings about the libraries' own internals or about choices unetpp makes on purpose
QUIET_WARNINGS = (
    (FutureWarning, r".*pytree.*"),
    (DeprecationWarning, r".*pytree.*"),
    (UserWarning, r".*pytree.*"),
    (Warning, r".*does not have many workers.*"),  # unetpp sets num_workers from the plan
    (Warning, r".*smaller than the logging interval.*"),  # short epochs on small data sets
    (Warning, r".*Checkpoint directory .* exists and is not empty.*"),  # a resumed run's own folder
    (Warning, r".*`isinstance\(treespec, LeafSpec\)` is deprecated.*"),
    (Warning, r".*treespec.*"),
    (Warning, r".*The number of training batches.*"),  # small data sets: fewer batches than the log interval
    (Warning, r".*The maximum displacement.*"),  # TorchIO's elastic check on small patches
)
# whole libraries whose warnings concern their internals, not the user's run
QUIET_MODULES = r"(lightning|torch|torchio|torchvision|timm)(\.|$)"


@contextlib.contextmanager
def quiet_libraries(verbose: bool = False) -> Iterator[None]:
    """Within the block, library loggers show warnings only and known noise warnings are hidden."""
    if verbose:
        yield
        return
    with contextlib.suppress(ImportError):  # imported first: its import sets its loggers to INFO, undoing ours
        import lightning.pytorch  # noqa: F401
    levels = {name: logging.getLogger(name).level for name in CHATTY_LOGGERS}
    with warnings.catch_warnings():
        for category, pattern in QUIET_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern, category=category)
        warnings.filterwarnings("ignore", module=QUIET_MODULES)
        for name in CHATTY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
        try:
            yield
        finally:
            for name, level in levels.items():
                logging.getLogger(name).setLevel(level)
