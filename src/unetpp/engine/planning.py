"""A run's config completed by the plan: what the user left unset comes from the data, and memory is checked.

``unetpp train --data ... --run-dir ...`` calls :func:`planned_config` before anything is built: the data
set is fingerprinted (cached), :func:`~unetpp.plan.rules.make_plan` chooses channels, classes, mask
threshold, depth, patch, batch, normalisation, resampling and caching under the memory budget, and
only the config fields the user did not set are filled from it (what the user set is handed to the plan
as an override, so what depends on it follows). Whatever the source of the settings (a plan, a saved
plan, or none), the guard then estimates the training peak: over the budget, a batch size the user
left to the plan is lowered; one the user fixed stops the run with one line naming what would fit.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..plan.memory import GB, estimate_peak_bytes, fit_batch, needs_recompute
from ..plan.record import Plan, format_plan, load_plan
from ..plan.rules import WORKER_BYTES, make_plan
from ..utils.system import memory_budget_bytes

if TYPE_CHECKING:
    from ..config import DataConfig, RunConfig
    from ..data import SegmentationDataset
    from ..plan.fingerprint import Fingerprint

log = logging.getLogger(__name__)

# config field -> plan field: what a user's setting overrides in the plan (and what the plan fills in)
PLAN_FIELDS = {
    "model.in_channels": "in_channels",
    "model.classes": "classes",
    "model.depth": "depth",
    "model.widths": "widths",
    "model.memory_efficient": "memory_efficient",
    "data.channels": "channels",
    "data.mask_threshold": "mask_threshold",
    "data.patch_size": "patch_size",
    "data.batch_size": "batch_size",
    "data.normalize": "normalize",
    "data.intensity_clip": "intensity_clip",
    "data.intensity_mean": "intensity_mean",
    "data.intensity_std": "intensity_std",
    "data.target_spacing": "target_spacing",
    "data.cache": "cache",
    "data.augment": "augment",
    "train.precision": "precision",
}
_NOT_NONE = {"depth", "widths", "patch_size", "batch_size"}  # None here means "the default": the plan decides
# the model's default widths for the planned depth, the config's augmentation: unless the plan gives a reason
_NOT_FILLED = {"model.widths", "data.augment"}


def user_fields_of(cfg: RunConfig, assigned: Iterable[str] = ()) -> frozenset[str]:
    """Fields the user set: those `assigned` (``section.field``) and those that differ from the defaults."""
    from ..config import RunConfig

    default, mine = RunConfig().to_dict(), cfg.to_dict()
    differ = {f"{s}.{k}" for s, fields in mine.items() for k, v in fields.items() if default[s][k] != v}
    return frozenset(assigned) | differ


def planned_config(
    cfg: RunConfig,
    plan: str | os.PathLike[str] | Plan | None = "auto",
    user_fields: Iterable[str] | None = None,
) -> tuple[RunConfig, Plan | None]:
    """The config with the plan's choices where the user set nothing, checked against the memory budget.

    Args:
        cfg: the config as the user gave it.
        plan: ``"auto"`` fingerprints the data and makes the plan; a path (or :class:`Plan`) uses a saved
            plan; ``None`` or ``"off"`` uses none (the config's own values), but memory is still checked.
        user_fields: ``section.field`` names the user set (they win over the plan); default: those that
            differ from the defaults (:func:`user_fields_of`).

    Returns:
        The completed config and the plan used (None without one); the caller saves the plan.

    Raises:
        ConfigError: a plan that contradicts the config, or a budget too small (one line: the estimate,
            the budget and what would fit).
        DataError: the data set cannot be read.
    """
    user = frozenset(user_fields) if user_fields is not None else user_fields_of(cfg)
    chosen: Plan | None
    if plan is None or plan == "off":
        chosen = None
    elif isinstance(plan, Plan):
        chosen = plan
    elif str(plan) == "auto":
        chosen = _make(cfg, user)
    else:
        chosen = load_plan(plan)
        log.info("plan: %s", Path(plan))
    if chosen is not None:
        cfg = apply_plan(cfg, chosen, user)
    return guard_memory(cfg, user), chosen


def _make(cfg: RunConfig, user: frozenset[str]) -> Plan:
    from ..plan.fingerprint import fingerprint

    dims = cfg.model.spatial_dims if "model.spatial_dims" in user else None
    fp = fingerprint(open_for_plan(cfg.data, dims))
    values = {f"{s}.{k}": v for s, fields in cfg.to_dict().items() for k, v in fields.items()}
    overrides: dict[str, Any] = {}
    for name, field in PLAN_FIELDS.items():
        if name in user and not (field in _NOT_NONE and values[name] is None):
            overrides[field] = values[name]
    plan = plan_within_budget(cfg, user, fp, overrides)
    log.info("%s", format_plan(plan, fp))
    return plan


def plan_within_budget(cfg: RunConfig, user: frozenset[str], fp: Fingerprint, overrides: dict[str, Any]) -> Plan:
    """The plan for `cfg`'s model on the data of `fp`, the user's `overrides` (plan fields) kept; under a
    wall-clock budget (``train.max_minutes``) with widths left to the plan, narrowed to what it can train, and
    with augmentation left to it, the augmentation its steps can afford.

    One function for ``unetpp train`` and ``unetpp plan --minutes``, so that both show the same widths.
    """
    if "widths" in overrides and "depth" not in overrides:  # widths name the depth: one per level
        overrides = {**overrides, "depth": len(overrides["widths"]) - 1}

    def planned(over: dict[str, Any]) -> Plan:
        return make_plan(
            fp,
            cfg.model.name,
            cfg.train.memory_gb,
            device_of(cfg),
            over,
            precision=cfg.train.precision if "train.precision" in user else None,
            workers=cfg.data.num_workers,
        )

    plan = planned(overrides)
    if not cfg.train.max_minutes or cfg.model.encoder is not None:  # a backbone's widths are its own: not timed
        return plan
    from .budget_augment import augment_for
    from .budget_widths import fit_widths, steps_affordable, training_step_seconds

    def step_seconds(p: Plan) -> float:  # the run's config with this plan's model, widths included
        run = apply_plan(cfg, p, user)
        model = dataclasses.replace(run.model, widths=p.widths)
        return training_step_seconds(dataclasses.replace(run, model=model), device_of(cfg))

    minutes, depth = cfg.train.max_minutes, plan.depth

    def replan(widths: tuple[int, ...]) -> Plan:  # halving the widths keeps the depth
        return planned({**overrides, "widths": widths, "depth": depth})

    steps = None
    if "widths" not in overrides:
        plan, steps = fit_widths(plan, minutes, step_seconds, replan)
    if "augment" in overrides:
        return plan
    if steps is None:
        steps = steps_affordable(step_seconds(plan), minutes)
    return augment_for(plan, minutes, steps)


def open_for_plan(data: DataConfig, spatial_dims: int | None = None) -> SegmentationDataset:
    """The data set of `data`, opened only to list its items (the fingerprint reads the raw files).

    `spatial_dims` None: 3 for the decathlon layout and for NIfTI files, else 2 (TIFF stacks need 3).
    """
    from ..data.layouts import open_dataset

    cfg = dataclasses.replace(data, cache=False, mask_threshold=None, target_spacing=None)
    if cfg.normalize == "ct":
        cfg = dataclasses.replace(cfg, normalize="zscore")
    dims = spatial_dims or (3 if data.layout == "decathlon" else 2)
    ds = open_dataset(cfg, dims, classes=None)
    nifti = any(str(i.image).endswith((".nii", ".nii.gz")) for i in ds.items[:1])
    if spatial_dims is None and ds.spatial_dims == 2 and nifti:
        ds = open_dataset(cfg, 3, classes=None)
    return ds


def apply_plan(cfg: RunConfig, plan: Plan, user_fields: Iterable[str]) -> RunConfig:
    """`cfg` with the plan's value in every planned field the user did not set (and the plan's dimensionality).

    Raises:
        ConfigError: the plan is for 2D data and the config for 3D (or the reverse).
    """
    from ..config import RunConfig

    user = frozenset(user_fields)
    if "model.spatial_dims" in user and cfg.model.spatial_dims != plan.spatial_dims:
        raise ConfigError(
            f"model.spatial_dims={cfg.model.spatial_dims} but the plan is for {plan.spatial_dims}D data; "
            f"drop --3d/model.spatial_dims or make the plan again"
        )
    d = cfg.to_dict()
    plan_values = plan.to_dict()
    d["model"]["spatial_dims"] = plan.spatial_dims
    for name, field in PLAN_FIELDS.items():
        if name in user or (name in _NOT_FILLED and field not in plan.reasons):  # unless the plan chose them
            continue
        section, key = name.split(".")
        d[section][key] = plan_values[field]
    if "model.widths" in user and cfg.model.widths and "model.depth" not in user:
        d["model"]["depth"] = len(cfg.model.widths) - 1  # the user's widths name the depth: one per level
    return RunConfig.from_dict(d, source="the plan")


def device_of(cfg: RunConfig) -> str:
    """Where `cfg` trains, "cuda" or "cpu" (``train.accelerator``; "auto" means a GPU if there is one)."""
    acc = cfg.train.accelerator
    if acc in ("gpu", "cuda"):
        return "cuda"
    if acc == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cpu"


def default_patch(spatial_dims: int) -> tuple[int, ...]:
    """The paper's patches: 96x96 (2D), 64^3 (3D); what the sampler uses when data.patch_size is None."""
    return (96, 96) if spatial_dims == 2 else (64, 64, 64)


def budget_bytes(cfg: RunConfig) -> float:
    """``train.memory_gb``, or most of the free RAM (or of the GPU's free memory)."""
    return cfg.train.memory_gb * GB if cfg.train.memory_gb is not None else memory_budget_bytes(device_of(cfg))


def guard_memory(cfg: RunConfig, user_fields: Iterable[str]) -> RunConfig:
    """Estimate the training peak of the configured model, patch and batch; lower or refuse a batch over budget.

    Raises:
        ConfigError: over the budget with a batch size the user set (or batch 1 over it): one line with
            the estimate, the budget and a setting that fits.
    """
    patch = cfg.data.patch_size or default_patch(cfg.model.spatial_dims)
    device = device_of(cfg)
    budget = budget_bytes(cfg)
    reserved = WORKER_BYTES * cfg.data.num_workers
    precision = cfg.train.precision
    batch = cfg.data.batch_size
    need = estimate_peak_bytes(cfg.model, patch, batch, True, precision, device) + reserved
    if need <= budget:
        return cfg
    user = frozenset(user_fields)
    if not cfg.model.memory_efficient and "model.memory_efficient" not in user:
        _, _, recomputed = needs_recompute(cfg.model, patch, batch, budget - reserved, precision, device)
        if recomputed + reserved <= budget:
            efficient = dataclasses.replace(cfg.model, memory_efficient=True)
            log.info(
                "memory-efficient training on: batch %d needs about %.1f GB stored, over the %.1f GB budget",
                batch,
                need / GB,
                budget / GB,
            )
            return dataclasses.replace(cfg, model=efficient)
    fits = fit_batch(cfg.model, patch, budget, batch, precision, device, reserved)  # raises if batch 1 is over
    where = f"{'x'.join(map(str, patch))} patches"
    if "data.batch_size" in user:
        raise ConfigError(
            f"data.batch_size={batch} on {where} needs about {need / GB:.1f} GB, over the memory budget of "
            f"{budget / GB:.1f} GB; data.batch_size={fits} would fit (or a smaller patch, or raise --memory-gb)"
        )
    log.info(
        "batch size lowered from %d to %d: %d needs about %.1f GB of the %.1f GB budget",
        batch,
        fits,
        batch,
        need / GB,
        budget / GB,
    )
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, batch_size=fits))
