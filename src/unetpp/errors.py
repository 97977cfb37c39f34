"""Errors a user can cause and fix: each message says what was got, what is valid, what to do.

The CLI prints any :class:`UnetppError` as one line and exits 2; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations


class UnetppError(Exception):
    """Base class of every error caused by user input (arguments, files, checkpoints)."""


class ConfigError(UnetppError, ValueError):
    """An argument or configuration value is invalid."""


class InputShapeError(UnetppError, ValueError):
    """A tensor given to a model has the wrong rank, channel count or spatial size."""


class CheckpointError(UnetppError):
    """A checkpoint file is missing, corrupt, or holds a different model."""


class DataError(UnetppError):
    """An image, mask or data set on disk cannot be used."""


class ExportError(UnetppError):
    """A model cannot be written in a deployment format (e.g. the output file exists)."""


class InitError(UnetppError):
    """A model to start from (``train --init``) does not fit the data or the options given with it."""


class TrainingError(UnetppError):
    """Training cannot go on as configured (e.g. the loss became non-finite: the learning rate is too high)."""
