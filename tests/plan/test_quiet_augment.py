"""Augmentation fits small patches (no TorchIO folding warning) and the CLI hides library chatter unless verbose."""

from __future__ import annotations

import logging
import warnings

import torch
import torchio as tio

from unetpp.cli.quiet import quiet_libraries
from unetpp.data.transforms import ELASTIC_CONTROL_POINTS, ELASTIC_MAX_DISPLACEMENT, elastic_displacement


def test_elastic_displacement_shrinks_with_the_patch_and_never_folds() -> None:
    assert elastic_displacement((96, 96), 2) == (ELASTIC_MAX_DISPLACEMENT,) * 2
    small = elastic_displacement((32, 48, 32), 3)
    assert max(small) < ELASTIC_MAX_DISPLACEMENT
    subject = tio.Subject(image=tio.ScalarImage(tensor=torch.randn(1, 32, 48, 32)))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # TorchIO's "maximum displacement is larger ..." fails here
        tio.RandomElasticDeformation(ELASTIC_CONTROL_POINTS, max_displacement=small)(subject)


def test_the_default_displacement_would_warn_on_that_patch() -> None:
    """The test above can fail: TorchIO does warn for the fixed 7.5 voxels on a 32-voxel axis."""
    subject = tio.Subject(image=tio.ScalarImage(tensor=torch.randn(1, 32, 48, 32)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tio.RandomElasticDeformation(ELASTIC_CONTROL_POINTS, max_displacement=ELASTIC_MAX_DISPLACEMENT)(subject)
    assert any("maximum displacement" in str(w.message) for w in caught)


def test_quiet_libraries_is_scoped_and_verbose_shows_everything() -> None:
    logger = logging.getLogger("lightning.pytorch")
    before = logger.level
    with quiet_libraries(verbose=False):
        assert logger.getEffectiveLevel() == logging.WARNING
        with warnings.catch_warnings(record=True) as caught:  # keeps the filters quiet_libraries set
            warnings.warn("torch.utils._pytree._register_pytree_node is deprecated", FutureWarning, stacklevel=1)
            warnings.warn("an option of unetpp's own is deprecated", FutureWarning, stacklevel=1)
        assert [str(w.message) for w in caught] == ["an option of unetpp's own is deprecated"]
    assert logger.level == before
    with quiet_libraries(verbose=True):
        assert logger.level == before
