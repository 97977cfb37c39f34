"""The held-out test set of a study, and the training images that remain once it is set aside.

The test images never reach training: with ``test_ids`` or ``test_fraction`` each run trains on
``data.ids`` = the other images (its own validation split is drawn from those), with a test folder
the training folder is used whole.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch.utils.data import Subset

from ..errors import ConfigError
from .spec import ModelSpec, StudySpec


def _open(spec: StudySpec, root: str):
    """The data set at `root` in the study's layout, read as the runs read it (channels, 2D/3D, classes)."""
    # The engine owns the one table of layouts; a study reads data exactly as training does.
    from ..data.layouts import open_dataset

    cfg = spec.run_config(ModelSpec.parse(spec.models[0]), spec.seeds[0], None)
    data = cfg.override([f"data.root={root}", "data.ids=null"]).data
    return open_dataset(data, spec.spatial_dims, spec.classes)


def split(spec: StudySpec) -> tuple[list[str] | None, Sequence[dict]]:
    """Training ids (None: the whole training folder) and the test samples (dicts with image, mask, id), lazily read.

    Raises:
        ConfigError: test ids that are not in the data set, or a test set that leaves no training image.
    """
    if spec.test_folder is not None:
        return None, _open(spec, spec.test_folder)
    full = _open(spec, spec.data)
    ids = list(full.ids)
    if spec.test_ids is not None:
        unknown = sorted(set(spec.test_ids) - set(ids))
        if unknown:
            raise ConfigError(
                f"test ids {unknown[:5]} are not in {spec.data or 'the data set'}; ids look like {ids[:3]}"
            )
        chosen = set(spec.test_ids)
    else:
        n_test = max(1, math.ceil(spec.test_fraction * len(ids)))  # type: ignore[operator]
        chosen = set(ids[len(ids) - n_test :])  # the last block: serial sections stay contiguous
    train = [i for i in ids if i not in chosen]
    if not train:
        raise ConfigError(f"the test set takes all {len(ids)} images; keep some for training")
    return train, Subset(full, [k for k, i in enumerate(ids) if i in chosen])
