"""Every setting of a training run in one visible place, with its default and why.

A run is ``RunConfig(model=..., data=..., train=...)``: frozen dataclasses whose fields are checked
when they are built (types, choices, ranges), so a bad value fails in one line that names the field,
the value and what is allowed, before any folder is created. The resolved config is written to the
run folder as ``config.yaml``; the CLI and YAML files override single fields (``train.lr=1e-3``).
Model defaults are those of :func:`unetpp.build_model` for the nested family (read from its signature).
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .data.instances import INSTANCE_LAYOUTS
from .data.layouts import LAYOUTS
from .errors import ConfigError
from .models.registry import build_nested
from .utils.coerce import coerce as _coerce
from .utils.precision import LIGHTNING_NAMES, Precision, canonical_precision


def _model_default(name: str) -> Any:
    return inspect.signature(build_nested).parameters[name].default


def _f(
    default: Any, *, ge: float | None = None, gt: float | None = None, lt: float | None = None, le: float | None = None
) -> Any:
    """A field with a range checked when the config is built (for numbers, or every item of a tuple)."""
    return field(default=default, metadata={"ge": ge, "gt": gt, "lt": lt, "le": le})


INSTANCE_FIELDS = ("task", "pyramid_width", "anchor_sizes", "min_size")  # model fields outside build_nested


@dataclass(frozen=True)
class ModelConfig:
    name: str = "unet++"  # one of unetpp.list_models()
    in_channels: int = _f(_model_default("in_channels"), ge=1)
    classes: int = _f(_model_default("classes"), ge=1)  # 1 = binary (sigmoid); >1 = softmax incl. background
    depth: int | None = _f(_model_default("depth"), ge=1)  # None: 4, or as deep as an encoder's strides allow
    widths: tuple[int, ...] | None = _f(_model_default("widths"), ge=1)  # None: the paper's 32-64-128-256-512
    deep_supervision: bool = _model_default("deep_supervision")  # heads on every X^{0,j}: ensemble and pruning
    spatial_dims: Literal[2, 3] = _model_default("spatial_dims")
    norm: Literal["batch", "instance"] | None = _model_default("norm")
    dropout: float = _f(_model_default("dropout"), ge=0.0, lt=1.0)
    encoder: str | None = _model_default("encoder")  # a timm backbone name, or None for the paper's encoder
    encoder_weights: str | None = _model_default("encoder_weights")  # "imagenet" (downloaded once), a .pth/.safetensors
    encoder_freeze: bool = _model_default("encoder_freeze")
    task: Literal["semantic", "instance"] = "semantic"  # instance: Mask R-CNN(++) (name maskrcnn/maskrcnn++)
    pyramid_width: int = _f(256, ge=1)  # instance: channels of the feature pyramid and of the box/mask heads
    anchor_sizes: tuple[int, ...] = _f((8, 16, 32, 64, 128), ge=1)  # instance: per level P2..P5+pool (nuclei)
    min_size: int | None = _f(None, ge=1)  # instance: resize images' shorter side to this; None: native scale
    memory_efficient: bool = _model_default("memory_efficient")  # recompute concat + norm/ReLU: less memory, ~same time

    def __post_init__(self) -> None:
        _validate(self, "model")

    def build_kwargs(self) -> dict[str, Any]:
        """Arguments of unetpp.build_model; encoder fields only when an encoder is set."""
        kw = dataclasses.asdict(self)
        name = kw.pop("name")
        for k in INSTANCE_FIELDS:  # the detectors' (engine/instance.py detector_kwargs)
            kw.pop(k)
        if kw["encoder"] is None:
            for k in ("encoder", "encoder_weights", "encoder_freeze"):
                kw.pop(k)
        return {"name": name, **kw}


@dataclass(frozen=True)
class DataConfig:
    root: str = ""  # the data set folder; unused for layout "synthetic"
    layout: str = "folders"  # a name of unetpp.data.layouts.LAYOUTS
    channels: Literal["grey", "rgb", "keep"] = "keep"
    normalize: Literal["zscore", "percentile", "ct", "none"] = "zscore"  # ct: clip + z-score with the stats below
    intensity_clip: tuple[tuple[float, ...], ...] | None = None  # ct: per channel [low, high] (foreground 0.5-99.5%)
    intensity_mean: tuple[float, ...] | None = None  # ct: per channel, the data set's foreground mean
    intensity_std: tuple[float, ...] | None = _f(None, gt=0.0)  # ct: per channel, the data set's foreground sd
    mask_threshold: float | None = None  # binarise masks at this value (noisy JPEG masks: 127.5); None: as stored
    target_spacing: tuple[float, ...] | None = _f(None, gt=0.0)  # 3D: resample volumes to this spacing to train
    patch_size: tuple[int, ...] | None = _f(None, ge=1)  # None: 96x96 (2D) or 64^3 (3D), as the paper trained
    patches_per_image: int = _f(8, ge=1, le=100_000)  # patches drawn from each training image per epoch
    fg_prob: float = _f(0.33, ge=0.0, le=1.0)  # foreground oversampling, as nnU-Net
    augment: Literal["light", "full", "none"] = "light"  # full: also affine and elastic resampling
    split: Literal["auto", "block", "random", "kfold"] = "auto"  # auto: the layout's own (block for serial sections)
    val_fraction: float = _f(0.2, ge=0.0, lt=1.0)
    folds: int = _f(5, ge=2)
    fold: int = _f(0, ge=0)
    ids: tuple[str, ...] | None = None  # use only these images (by id), e.g. to keep a test set out; None: all
    val_ids: tuple[str, ...] | None = None  # explicit validation images (by id); overrides split
    batch_size: int = _f(16, ge=1)
    num_workers: int = _f(1, ge=0)
    cache: bool = True  # keep decoded images in memory
    synthetic_images: int = _f(24, ge=2)  # layout "synthetic": the embedded demo data set
    synthetic_size: int = _f(256, ge=16)

    def __post_init__(self) -> None:
        if self.augment == "default":  # run folders and checkpoints saved before light became the default
            warnings.warn("data.augment='default' is now spelled 'full' ('light' is the default)", FutureWarning, 2)
            object.__setattr__(self, "augment", "full")
        _validate(self, "data")
        stats = (self.intensity_clip, self.intensity_mean, self.intensity_std)
        if self.normalize == "ct" and (any(v is None for v in stats) or len({len(v) for v in stats}) != 1):  # type: ignore[arg-type]
            raise ConfigError(
                "data.normalize: 'ct' needs data.intensity_clip, intensity_mean and intensity_std, one entry per "
                "channel each; let the plan set them (unetpp plan) or use 'percentile'"
            )
        if self.intensity_clip is not None and any(len(c) != 2 or c[0] >= c[1] for c in self.intensity_clip):
            raise ConfigError(f"data.intensity_clip: got {self.intensity_clip!r}; expected [low, high] per channel")

    @property
    def intensity_stats(self) -> tuple[tuple[float, float, float, float], ...] | None:
        """Per channel ``(clip_low, clip_high, mean, sd)`` for ``normalize='ct'``, else None."""
        if self.normalize != "ct":
            return None
        return tuple(
            (float(c[0]), float(c[1]), float(m), float(s))
            for c, m, s in zip(self.intensity_clip, self.intensity_mean, self.intensity_std, strict=True)  # type: ignore[arg-type]
        )

    def preprocessing(self) -> dict[str, Any]:
        """What prediction must repeat (it travels in checkpoints): channels, normalisation, spacing, threshold."""
        names = ("channels", "normalize", "intensity_clip", "intensity_mean", "intensity_std", "target_spacing")
        return _plain({n: getattr(self, n) for n in (*names, "mask_threshold")})


PAPER_LR = 3e-4  # the paper's constant Adam (and Mask R-CNN++'s, which has no schedule)
DECAY_PEAK_LR = 1e-3  # the peak of a schedule that decays to zero at the end of the run


@dataclass(frozen=True)
class TrainConfig:
    max_epochs: int = _f(100, ge=1)
    max_minutes: float | None = _f(None, gt=0.0)  # wall-clock budget; training stops cleanly when it is spent
    # training steps per epoch on every data set (nnU-Net: 250); None: data.patches_per_image x images (the paper)
    steps_per_epoch: int | None = _f(250, ge=1, le=1_000_000)
    # learning rate over the run: warm-up, then decay to 0 at the end of --minutes (by time) or --epochs (by steps);
    # "paper": constant Adam at 3e-4. Measured in benchmarks/RESULTS.md (issue 19): linear from 1e-3 beat constant 3e-4
    # by 1.5-1.8 IoU on ISBI; peaks 5e-4..3e-3 and linear, cosine and poly decays scored the same (3 seeds each)
    schedule: Literal["linear", "cosine", "poly", "paper"] = "linear"
    lr: float | None = _f(None, gt=0.0)  # peak (Adam); None: 1e-3 for a decaying schedule, 3e-4 for "paper"
    warmup: float = _f(0.02, ge=0.0, lt=1.0)  # share of the run spent warming the learning rate up
    weight_decay: float = _f(0.0, ge=0.0)
    # decay per step of an exponential moving average of the weights (0: off; Lightning's EMAWeightAveraging):
    # validation, checkpoints and model files then hold the average
    ema: float = _f(0.0, ge=0.0, lt=1.0)
    # at the end, measure flips and small components on validation and record what prediction does (engine/tta.py)
    choose_tta: bool = True
    encoder_lr_scale: float = _f(1.0, ge=0.0)  # lr of a pretrained encoder relative to lr
    head_weights: tuple[float, ...] | None = _f(None, ge=0.0)  # deep-supervision weight per head; None: all 1
    bce_weight: float = _f(0.5, ge=0.0)  # hybrid loss: bce_weight * CE + dice_weight * (1 - Dice), authors' code
    dice_weight: float = _f(1.0, ge=0.0)
    early_stopping: int | None = _f(None, ge=1)  # patience in validations; None: off
    precision: Precision = "32"  # "bf16": 2-3x faster with AVX512-BF16/AMX and on GPUs (the plan picks it there)
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = "auto"
    devices: str = "auto"  # "auto", a count ("4") or a list of GPU ids ("0,1")
    num_nodes: int = _f(1, ge=1)  # several nodes: started by torchrun/SLURM
    strategy: str = "auto"  # "ddp" across GPUs/nodes
    seed: int = _f(0, ge=0)
    val_every: int = _f(1, ge=1)  # validate every n epochs
    log_every: int = _f(10, ge=1)  # steps
    progress: bool = True
    memory_gb: float | None = _f(None, gt=0.0)  # memory budget of the plan and the guard; None: most of free RAM/GPU
    # torch.compile the training forward: for GPUs; on CPU it measured 0.57x eager at 16x96^2 after 355 s compiling
    compile: bool = False
    init: str | None = None  # a model file or Hub id to start from (train --init): its architecture and weights

    def __post_init__(self) -> None:
        object.__setattr__(self, "precision", canonical_precision(self.precision, where="train.precision"))
        if isinstance(self.devices, int) and not isinstance(self.devices, bool):
            object.__setattr__(self, "devices", str(self.devices))
        _validate(self, "train")
        parts = self.devices.split(",")
        if self.devices != "auto" and not all(p.strip().isdigit() for p in parts):
            raise ConfigError(f"train.devices: got {self.devices!r}; expected 'auto', a count like '2' or ids '0,1'")
        if not self.strategy:
            raise ConfigError("train.strategy: got ''; expected 'auto', 'ddp' or another Lightning strategy")
        _check_strategy(self.strategy)

    @property
    def peak_lr(self) -> float:
        """The learning rate the schedule starts its decay from (``lr``, or the schedule's default)."""
        if self.lr is not None:
            return self.lr
        return PAPER_LR if self.schedule == "paper" else DECAY_PEAK_LR

    @property
    def lightning_precision(self) -> str:
        return LIGHTNING_NAMES[self.precision]


_SECTIONS: dict[str, type] = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}


@dataclass(frozen=True)
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (tuples as lists), ready for YAML."""
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: Any, source: str = "config") -> RunConfig:
        """Build and validate a config from nested dicts (YAML).

        Raises:
            ConfigError: not a mapping, an unknown section or field, or an invalid value.
        """
        if not isinstance(d, dict):
            raise ConfigError(f"{source}: expected a mapping of sections (model, data, train), got {type(d).__name__}")
        unknown = set(d) - set(_SECTIONS)
        if unknown:
            raise ConfigError(f"{source}: unknown config section(s) {sorted(unknown)}; sections are model, data, train")
        sections = {}
        for name, kind in _SECTIONS.items():
            values = d.get(name) or {}
            if not isinstance(values, dict):
                raise ConfigError(f"{source}: section {name!r} must be a mapping of fields, got {values!r}")
            known = {f.name for f in dataclasses.fields(kind)}
            if set(values) - known:
                extra = sorted(set(values) - known)
                raise ConfigError(f"{source}: unknown field(s) {extra} in section {name!r}; known: {sorted(known)}")
            sections[name] = kind(**values)
        return cls(**sections)

    def override(self, assignments: list[str]) -> RunConfig:
        """Apply ``section.field=value`` strings in order (values parsed as YAML: 3, 1e-3, [32, 64], null).

        Raises:
            ConfigError: a malformed assignment, an unknown field, or an invalid value.
        """
        import yaml

        d = self.to_dict()
        for a in assignments:
            dotted, sep, raw = a.partition("=")
            section, _, name = dotted.strip().partition(".")
            if not sep or section not in d or name not in d[section]:
                raise ConfigError(f"cannot apply {_short(a)}: {_unknown_field(dotted.strip(), sep)}")
            if typing.get_type_hints(_SECTIONS[section])[name] is str:
                d[section][name] = raw.strip()  # paths and names as typed: "data.root=" is "", not null
                continue
            try:
                d[section][name] = yaml.safe_load(raw)
            except yaml.YAMLError:
                d[section][name] = raw  # not YAML: keep the text, validation says what was expected
        return RunConfig.from_dict(d)

    def dump(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        from .utils.atomic import write_text

        return write_text(path, self.dump(), overwrite, ConfigError)

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        import yaml

        try:
            d = yaml.safe_load(Path(path).read_text())
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else type(e).__name__
            raise ConfigError(f"{path}: cannot read the config ({reason}); check the path and YAML syntax") from None
        return cls.from_dict(d or {}, source=str(path))


def _short(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _unknown_field(dotted: str, sep: str) -> str:
    """Why ``section.field`` cannot be set, in a short phrase with the closest field name (not all 60 of them)."""
    if not sep:
        return "expected section.field=value, e.g. train.lr=1e-3"
    names = [f"{s}.{f.name}" for s, k in _SECTIONS.items() for f in dataclasses.fields(k)]
    close = difflib.get_close_matches(dotted, names, n=1, cutoff=0.6)
    close = close or difflib.get_close_matches(f"{dotted.rpartition('.')[2]}", [n.split(".")[1] for n in names], n=1)
    if close and "." not in close[0]:
        close = [n for n in names if n.endswith(f".{close[0]}")][:1]
    hint = f"did you mean {close[0]}?" if close else "fields are listed in a run folder's config.yaml"
    return f"unknown field {_short(dotted, 40)}; {hint}"


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# ------------------------------------------------------------------------------------------ validation


def _validate(section: Any, name: str) -> None:
    """Check and normalise every field of a frozen section against its type hint and range."""
    hints = typing.get_type_hints(type(section))
    for f in dataclasses.fields(section):
        where = f"{name}.{f.name}"
        value = _coerce(getattr(section, f.name), hints[f.name], where)
        _check_range(value, f.metadata, where)
        object.__setattr__(section, f.name, value)
    if name == "model":
        _check_model_name(section.name, section.task)
    if name == "data" and section.layout not in {**LAYOUTS, **INSTANCE_LAYOUTS}:  # instance layouts: coco
        raise ConfigError(f"data.layout: got {section.layout!r}; expected one of {', '.join(LAYOUTS)}, coco")


def _check_strategy(strategy: str) -> None:
    """A Lightning strategy name (checked here, not as a traceback when the trainer is built)."""
    if strategy.lower() in ("auto", "ddp"):
        return
    from lightning.pytorch.strategies import StrategyRegistry

    names = ["auto", *StrategyRegistry.available_strategies()]
    if strategy.lower() not in names:
        close = difflib.get_close_matches(strategy.lower(), names, n=1)
        hint = f"did you mean {close[0]!r}?" if close else "e.g. auto, ddp, ddp_spawn, fsdp, deepspeed"
        raise ConfigError(f"train.strategy: got {strategy!r}; not a Lightning strategy; {hint}")


def _check_model_name(model_name: str, task: str = "semantic") -> None:
    from .models import list_models

    detectors = [n for n in list_models(detectors=True) if n not in list_models()]
    names = detectors if task == "instance" else list_models()
    if task == "semantic" and model_name in detectors:
        raise ConfigError(f"model.name: {model_name!r} is an instance model; set model.task=instance (--task instance)")
    if model_name not in names:
        close = difflib.get_close_matches(model_name, names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"model.name: got {model_name!r}; expected one of {', '.join(names)}{hint}")


def _check_range(value: Any, meta: Any, where: str) -> None:
    items = value if isinstance(value, tuple) else (value,)
    for v in items:
        if v is None or isinstance(v, (str, bool)):
            continue
        for key, ok, text in (
            ("ge", lambda x, b: x >= b, ">="),
            ("gt", lambda x, b: x > b, ">"),
            ("lt", lambda x, b: x < b, "<"),
            ("le", lambda x, b: x <= b, "<="),
        ):
            bound = meta.get(key)
            if bound is not None and not ok(v, bound):
                raise ConfigError(f"{where}: got {value!r}; expected a value {text} {bound:g}")


__all__ = ["DataConfig", "ModelConfig", "RunConfig", "TrainConfig"]
