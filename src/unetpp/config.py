"""Every setting of a training run in one visible place, with its default and why.

A run is ``RunConfig(model=..., data=..., train=...)``. The resolved config is written to the run
folder as ``config.yaml``; the CLI and YAML files override single fields (``train.lr=1e-3``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .errors import ConfigError

Layout = Literal["folders", "isbi2012", "dsb2018", "decathlon", "synthetic"]


@dataclass
class ModelConfig:
    name: str = "unet++"  # one of unetpp.list_models()
    in_channels: int = 1
    classes: int = 1  # 1 = binary (sigmoid); >1 = softmax over classes incl. background
    depth: int = 4  # down-samplings L; the paper uses 4
    widths: list[int] | None = None  # None: the paper's 32-64-128-256-512
    deep_supervision: bool = True  # heads on every X^{0,j}: needed for ensemble mode and pruning
    spatial_dims: int = 2
    norm: str | None = "batch"
    dropout: float = 0.0
    encoder: str | None = None  # a timm backbone name, or None for the paper's plain encoder
    encoder_weights: str | None = None  # "imagenet" to start from pretrained weights (needs internet)
    encoder_freeze: bool = False

    def build_kwargs(self) -> dict[str, Any]:
        """Arguments of unetpp.build_model; encoder fields only when an encoder is set."""
        kw = dataclasses.asdict(self)
        name = kw.pop("name")
        if kw["encoder"] is None:
            for k in ("encoder", "encoder_weights", "encoder_freeze"):
                kw.pop(k)
        return {"name": name, **kw}


@dataclass
class DataConfig:
    root: str = ""  # the data set folder; unused for layout "synthetic"
    layout: Layout = "folders"  # folders: images/ + masks/ (or labels/), matched by file stem
    channels: str = "keep"  # "grey", "rgb" or "keep"
    normalize: str = "zscore"
    patch_size: list[int] | None = None  # None: 96x96 (2D) or 64^3 (3D), as the paper trained
    patches_per_image: int = 8  # patches drawn from each training image per epoch
    fg_prob: float = 0.33  # foreground oversampling, as nnU-Net
    augment: str = "default"  # "default" or "none"
    split: str = "block"  # "block" (contiguous: for serial sections), "random" or "kfold"
    val_fraction: float = 0.2
    folds: int = 5
    fold: int = 0
    ids: list[str] | None = None  # use only these images (by id), e.g. to keep a test set out; None: all
    val_ids: list[str] | None = None  # explicit validation images (by id); overrides split
    batch_size: int = 16
    num_workers: int = 1
    cache: bool = True  # keep decoded images in memory
    synthetic_images: int = 24  # layout "synthetic": the embedded demo data set
    synthetic_size: int = 256


@dataclass
class TrainConfig:
    max_epochs: int = 100
    max_minutes: float | None = None  # wall-clock budget; training stops cleanly when it is spent
    lr: float = 3e-4  # Adam, as the paper
    weight_decay: float = 0.0
    encoder_lr_scale: float = 1.0  # lr of a pretrained encoder relative to lr
    head_weights: list[float] | None = None  # deep-supervision weights per head; None: all 1 (paper)
    bce_weight: float = 0.5  # hybrid loss: bce_weight * CE + dice_weight * (1 - Dice), as the authors' code
    dice_weight: float = 1.0
    early_stopping: int | None = None  # patience in validations; None: off
    precision: str = "32-true"  # "bf16-mixed" is about 2x faster on CPUs with AVX-512 bf16 and on GPUs
    accelerator: str = "auto"
    devices: str = "auto"  # e.g. 4 GPUs: "4"; several nodes: also num_nodes, started by torchrun/SLURM
    num_nodes: int = 1
    strategy: str = "auto"  # "ddp" across GPUs/nodes
    seed: int = 0
    val_every: int = 1  # validate every n epochs
    log_every: int = 10  # steps
    progress: bool = True


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        unknown = set(d) - {"model", "data", "train"}
        if unknown:
            raise ConfigError(f"unknown config section(s) {sorted(unknown)}; sections are model, data, train")
        return cls(
            **{name: _section(kind, d.get(name) or {}, name) for name, kind in _SECTIONS.items()}  # type: ignore[arg-type]
        )

    def override(self, assignments: list[str]) -> RunConfig:
        """Apply ``section.field=value`` strings (values parsed as YAML: 3, 1e-3, [32, 64], null)."""
        import yaml

        d = self.to_dict()
        for a in assignments:
            dotted, sep, raw = a.partition("=")
            section, _, name = dotted.partition(".")
            if not sep or section not in d or name not in d[section]:
                raise ConfigError(f"cannot apply {a!r}: expected section.field=value with a field of {_fields()}")
            d[section][name] = yaml.safe_load(raw)
        return RunConfig.from_dict(d)

    def save(self, path: Path) -> None:
        import yaml

        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def load(cls, path: Path) -> RunConfig:
        import yaml

        try:
            d = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"{path}: cannot read the config ({e}); check the path and the YAML syntax") from e
        return cls.from_dict(d or {})


_SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}


def _fields() -> str:
    return ", ".join(f"{s}.{f.name}" for s, k in _SECTIONS.items() for f in dataclasses.fields(k))


def _section(kind: type, values: dict[str, Any], name: str) -> Any:
    known = {f.name for f in dataclasses.fields(kind)}
    unknown = set(values) - known
    if unknown:
        raise ConfigError(f"unknown field(s) {sorted(unknown)} in section {name!r}; known: {sorted(known)}")
    return kind(**values)
