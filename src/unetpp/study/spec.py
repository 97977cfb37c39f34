"""What a study is: model specs as short strings, and the study spec saved as ``study.yaml``.

A study asks the paper's question (Zhou et al., UNet++, IEEE TMI 2019, doi:10.1109/TMI.2019.2959609)
of one data set: which variant, which depth, with or without deep supervision, and is the
difference real? Its spec names the data, the models (``unet:depth=2``, ``wide_unet``,
``unet+:ds=false``, ``unet++``, ``unet++:encoder=resnet34``), the seeds, the budget and the held-out
test set. Every (model, seed) becomes an ordinary training run whose config is built here with
``RunConfig().override([...])``, so a run folder of a study is a run folder like any other.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import RunConfig
from ..errors import ConfigError
from ..utils.atomic import atomic_write

# option -> (config field, parser of the string value, what is valid)
_OPTIONS: dict[str, tuple[str, str]] = {
    "depth": ("model.depth", "an integer >= 1, e.g. depth=2"),
    "ds": ("model.deep_supervision", "true or false, e.g. ds=false"),
    "encoder": ("model.encoder", "a timm backbone name, e.g. encoder=resnet34"),
    "weights": ("model.encoder_weights", "imagenet, none or a state dict file (.pth, .safetensors)"),
    "widths": ("model.widths", "channels per level joined by '-', e.g. widths=16-32-64"),
    "norm": ("model.norm", "batch, instance or none"),
}
_BOOL = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def _parse_value(model: str, key: str, raw: str) -> Any:
    try:
        if key == "depth":
            value = int(raw)
            if value < 1:
                raise ValueError
            return value
        if key == "ds":
            return _BOOL[raw.lower()]
        if key == "widths":
            widths = [int(w) for w in raw.split("-")]
            if any(w < 1 for w in widths):
                raise ValueError
            return widths
        if key in ("weights", "norm") and raw.lower() in ("none", "null"):
            return None
        if key == "norm" and raw not in ("batch", "instance"):
            raise ValueError
        if not raw:
            raise ValueError
        return raw
    except (ValueError, KeyError):
        raise ConfigError(f"model {model!r}: bad value {key}={raw!r}; {key} must be {_OPTIONS[key][1]}") from None


@dataclass(frozen=True)
class ModelSpec:
    """A model of the family as a short string: ``name[:key=value[,key=value...]]``.

    Example:
        >>> ModelSpec.parse("unet++:ds=false").overrides()
        ['model.name=unet++', 'model.deep_supervision=false']
    """

    name: str
    options: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def parse(cls, text: str) -> ModelSpec:
        """Parse and check a model spec; options may be separated by ',' or ':'.

        Raises:
            ConfigError: unknown model or option, or a bad value (one line naming it and what is valid).
        """
        from ..models import list_models

        name, _, rest = str(text).strip().partition(":")
        if name not in list_models():
            raise ConfigError(f"unknown model {name!r} in {text!r}; models are {', '.join(list_models())}")
        options: dict[str, Any] = {}
        for part in filter(None, re.split(r"[,:]", rest)):
            key, sep, raw = part.partition("=")
            if not sep or key not in _OPTIONS:
                raise ConfigError(
                    f"unknown option {part!r} in model {text!r}; options are {', '.join(_OPTIONS)} "
                    "(e.g. unet++:depth=3,ds=false)"
                )
            options[key] = _parse_value(str(text), key, raw)
        return cls(name, tuple(sorted(options.items())))

    def __str__(self) -> str:
        def show(v: Any) -> str:
            if isinstance(v, bool):
                return str(v).lower()
            if isinstance(v, list):
                return "-".join(map(str, v))
            return "none" if v is None else str(v)

        return self.name + "".join(
            f"{':' if k == 0 else ','}{key}={show(v)}" for k, (key, v) in enumerate(self.options)
        )

    @property
    def slug(self) -> str:
        """A folder name: ``unet++:ds=false`` -> ``unetpp_ds-false``."""
        text = str(self).replace("+", "p").replace(":", "_").replace(",", "_").replace("=", "-")
        return re.sub(r"[^A-Za-z0-9_.-]", "-", text)

    def option(self, key: str, default: Any = None) -> Any:
        return dict(self.options).get(key, default)

    def overrides(self) -> list[str]:
        """The config assignments that build this model (``section.field=value``, values as YAML)."""
        out = [f"model.name={self.name}"]
        for key, value in self.options:
            if isinstance(value, bool):
                text = str(value).lower()
            elif isinstance(value, list):
                text = "[" + ", ".join(map(str, value)) + "]"
            else:
                text = "null" if value is None else str(value)
            out.append(f"{_OPTIONS[key][0]}={text}")
        return out


@dataclass(frozen=True)
class StudySpec:
    """Everything that defines a study; saved as ``<out>/study.yaml``.

    Args:
        data: the data set folder ("" for layout "synthetic").
        layout: as ``data.layout`` of a run (folders, isbi2012, dsb2018, decathlon, synthetic).
        models: model specs (strings, see :class:`ModelSpec`); the first is the reference unless
            `reference` names another.
        seeds: one run per model and seed.
        epochs: training epochs per run (the fair unit, as the paper); None with `minutes` only.
        minutes: wall-clock budget per run (both are reported; the first reached stops a run).
        test_folder, test_ids, test_fraction: the held-out test set, exactly one of them: a folder
            in the same layout, the ids of images kept out of training, or the last fraction of
            the images in data-set order (a contiguous block, as serial sections need).
        spatial_dims, classes, in_channels: as the model config.
        overrides: further ``section.field=value`` settings for every run (patch size, batch...).
        hd95: also score HD95 (slower).
        size_bins: object-size edges for the Fig. 7 groups (voxels); empty: quartiles of the truth.
        embedded_vs_isolated: Fig. 6: add UNet++ L^d trained alone for d = 1..L and compare each
            with head d of the deeply supervised UNet++.
        paper: the paper's numbers this study compares against (model -> IoU %), for the report.
    """

    data: str = ""
    layout: str = "folders"
    models: tuple[str, ...] = ()
    seeds: tuple[int, ...] = (0,)
    epochs: int | None = None
    minutes: float | None = None
    test_folder: str | None = None
    test_ids: tuple[str, ...] | None = None
    test_fraction: float | None = None
    spatial_dims: int = 2
    classes: int = 1
    in_channels: int = 1
    overrides: tuple[str, ...] = ()
    reference: str | None = None
    hd95: bool = True
    size_bins: tuple[float, ...] = ()
    embedded_vs_isolated: bool = False
    name: str = "study"
    paper: dict[str, float] = field(default_factory=dict, hash=False, compare=False)

    # fields that change what a run trains on or how long: they must match finished runs
    RUN_FIELDS = (
        "data",
        "layout",
        "epochs",
        "minutes",
        "test_folder",
        "test_ids",
        "test_fraction",
        "spatial_dims",
        "classes",
        "in_channels",
        "overrides",
    )

    def __post_init__(self) -> None:
        if not self.models:
            raise ConfigError("a study needs at least one model, e.g. --models unet unet++")
        specs = [ModelSpec.parse(m) for m in self.models]  # raises on unknown models/options
        object.__setattr__(self, "models", tuple(str(s) for s in specs))
        if len(set(self.models)) != len(self.models):
            raise ConfigError(f"models {list(self.models)} name a model twice; list each once")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds must be distinct integers, got {list(self.seeds)}")
        if self.epochs is None and self.minutes is None:
            raise ConfigError("a study needs a budget: --epochs N (the fair unit, as the paper) and/or --minutes M")
        if self.epochs is not None and self.epochs < 1:
            raise ConfigError(f"--epochs: got {self.epochs}; expected an integer >= 1 (epochs per run)")
        if self.minutes is not None and not self.minutes > 0:
            raise ConfigError(f"--minutes: got {self.minutes}; expected a number > 0 (minutes per run)")
        bins = list(self.size_bins)
        if bins and (len(bins) < 2 or any(b >= c for b, c in zip(bins, bins[1:], strict=False)) or bins[0] < 0):
            raise ConfigError(
                f"--size-bins {' '.join(f'{b:g}' for b in bins)}: expected two or more increasing object sizes "
                "(voxels), e.g. --size-bins 0 100 1000"
            )
        tests = [t for t in (self.test_folder, self.test_ids, self.test_fraction) if t is not None]
        if len(tests) != 1:
            raise ConfigError(
                "a study needs exactly one held-out test set: --test FOLDER, --test-ids ID [ID ...] or "
                f"--test-fraction F (got {len(tests)})"
            )
        if self.test_fraction is not None and not 0 < self.test_fraction < 1:
            raise ConfigError(f"test fraction must be in (0, 1), got {self.test_fraction}")
        if self.layout != "synthetic" and not self.data:
            raise ConfigError("a study needs --data (the data set folder) unless the layout is synthetic")
        if self.reference is not None:
            ref = str(ModelSpec.parse(self.reference))
            if ref not in self.models:
                raise ConfigError(f"reference {self.reference!r} is not one of the models {list(self.models)}")
            object.__setattr__(self, "reference", ref)
        for a in self.overrides:
            RunConfig().override([a])  # a bad assignment fails now, naming the valid fields

    # ------------------------------------------------------------------ derived
    @property
    def reference_model(self) -> str:
        return self.reference or self.models[0]

    def model_specs(self) -> list[ModelSpec]:
        """The models to train: the listed ones, plus UNet++ L^d alone per depth for Fig. 6."""
        specs = [ModelSpec.parse(m) for m in self.models]
        for extra in self.isolated_models():
            if extra not in specs:
                specs.append(extra)
        return specs

    def isolated_models(self) -> list[ModelSpec]:
        """Fig. 6: for each deeply supervised UNet++ of depth L, UNet++ L^d trained alone, d = 1..L."""
        if not self.embedded_vs_isolated:
            return []
        out = []
        for m in (ModelSpec.parse(m) for m in self.models):
            if m.name == "unet++" and m.option("ds", True):
                depth = m.option("depth", 4)
                rest = {k: v for k, v in m.options if k not in ("depth", "ds")}
                out += [
                    ModelSpec("unet++", tuple(sorted({**rest, "depth": d, "ds": False}.items())))
                    for d in range(1, depth + 1)
                ]
        if not out:
            raise ConfigError("--embedded-vs-isolated needs a deeply supervised unet++ among the models")
        return out

    def run_config(self, model: ModelSpec, seed: int, train_ids: list[str] | None) -> RunConfig:
        """The config of one run: data, budget, the study's overrides, then the model's, then the seed."""
        base = [
            f"data.root={self.data}",
            f"data.layout={self.layout}",
            f"model.spatial_dims={self.spatial_dims}",
            f"model.classes={self.classes}",
            f"model.in_channels={self.in_channels}",
            f"train.max_epochs={self.epochs if self.epochs is not None else 1_000_000}",
            f"train.max_minutes={self.minutes if self.minutes is not None else 'null'}",
            "train.progress=false",
        ]
        if train_ids is not None:
            base.append("data.ids=[" + ", ".join(f"'{i}'" for i in train_ids) + "]")
        return RunConfig().override([*base, *self.overrides, *model.overrides(), f"train.seed={seed}"])

    def with_precision(self, saved: StudySpec | None = None) -> StudySpec:
        """This spec with its runs' precision fixed: the user's, else the saved study's, else this machine's.

        A new study takes what the plan would (:func:`unetpp.utils.precision.training_precision`: bf16 where
        the CPU or GPU computes it natively), once: it is saved with the study, so that runs resumed or
        added later, on this machine or another, train alike. Studies saved without it keep float32.
        """
        if any(o.startswith("train.precision=") for o in self.overrides):
            return self
        if saved is not None:
            kept = tuple(o for o in saved.overrides if o.startswith("train.precision="))
            return dataclasses.replace(self, overrides=(*self.overrides, *kept))
        from ..engine.planning import device_of
        from ..utils.precision import training_precision

        precision, _ = training_precision(device_of(RunConfig().override(list(self.overrides))))
        return dataclasses.replace(self, overrides=(*self.overrides, f"train.precision={precision}"))

    # ------------------------------------------------------------------ files
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "study spec") -> StudySpec:
        if not isinstance(d, dict):
            kind = type(d).__name__
            raise ConfigError(f"{source}: a study spec is a mapping of fields, got a {kind}; use another --out")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown field(s) {unknown}; known: {sorted(known)}")
        from ..config import _coerce

        hints = typing.get_type_hints(cls)  # types checked here: `epochs: ten` is one line, not a TypeError later
        values = {k: v if k == "paper" else _coerce(v, hints[k], f"{source}: {k}") for k, v in d.items()}
        return cls(**values)

    def save(self, folder: Path) -> Path:
        import yaml

        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        return atomic_write(
            Path(folder) / "study.yaml", lambda p: p.write_text(text), overwrite=True, error=ConfigError
        )

    @classmethod
    def saved_in(cls, folder: Path) -> StudySpec | None:
        """The study saved in `folder`, or None where there is none yet."""
        return cls.load(folder) if (Path(folder) / "study.yaml").is_file() else None

    @classmethod
    def load(cls, folder: Path) -> StudySpec:
        import yaml

        path = Path(folder) / "study.yaml"
        try:
            d = yaml.safe_load(path.read_text()) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else type(e).__name__
            raise ConfigError(f"{path}: cannot read the study spec ({reason}); fix it or start a new --out") from None
        return cls.from_dict(d, str(path))

    def clash(self, saved: StudySpec) -> str | None:
        """The first run-defining field that differs from a saved spec, as a message; None if they agree."""
        for name in self.RUN_FIELDS:
            new, old = getattr(self, name), getattr(saved, name)
            if new != old:
                return f"{name} is {old!r} in the saved study but {new!r} now"
        return None
