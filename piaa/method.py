"""The one interface every method implements, ours and the baselines alike.

A `Method` learns a prior from training raters (`fit`) and personalises it from a few rated images
(`adapt`), returning a `UserModel` that scores features. Configuration is a frozen dataclass whose
defaults reproduce the method's paper; learned state is separate and serialises to tensors.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

import numpy as np

from piaa.errors import ConfigError, NotFittedError

if TYPE_CHECKING:  # annotations only: a numpy method's run loads without importing torch or pandas
    import torch

    from piaa.tasks.format import RaterDataset


@dataclasses.dataclass(frozen=True)
class MethodConfig:
    """Base for per-method configuration. Subclasses add fields with paper-faithful defaults."""

    def replace(self, **changes: Any) -> "MethodConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "MethodConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(f"{cls.__name__} has no field {unknown[0]!r} (fields: {', '.join(sorted(names))})")
        converted = {k: _coerce(cls, k, v) for k, v in values.items()}
        return cls(**converted).validate()

    def validate(self) -> "MethodConfig":
        """Check every field against `FIELD_RULES` (and generic sanity: finite floats, counts >= 0).

        Runs for every config a method is built with, so an out-of-range value from `--set`, Python
        or a damaged run fails at once, naming the field, instead of deep inside training.
        """
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            items = value if isinstance(value, tuple) else (value,)
            for item in items:
                problem = _field_problem(f.name, item)
                if problem is not None:
                    shown = value if not isinstance(value, tuple) else ",".join(str(v) for v in value)
                    raise ConfigError(f"{type(self).__name__}.{f.name} = {shown}: expected {problem}")
        return self

    @classmethod
    def with_overrides(cls, base: "MethodConfig | None", assignments: list[str] | None) -> "MethodConfig":
        """Apply `field=value` strings (from `--set`) on top of `base` (or the defaults)."""
        cfg = base or cls()
        changes: dict[str, Any] = {}
        for item in assignments or []:
            if "=" not in item:
                raise ConfigError(f"--set expects field=value, got {item!r}")
            key, raw = item.split("=", 1)
            changes[key.strip()] = raw.strip()
        if not changes:
            return cfg
        merged = {**cfg.to_dict(), **changes}
        return cls.from_dict(merged)


# Ranges by field name (a tuple field's rule applies to each element). Names not listed only get the
# generic checks: floats finite, ints >= 0.
_UNIT = (0.0, 1.0, "a number in [0, 1)")
FIELD_RULES: dict[str, tuple[float, float | None, str]] = {
    # name: (lowest allowed, exclusive upper bound or None, what is expected)
    "dropout": _UNIT,
    "val_fraction": _UNIT,
    "personality_holdout": _UNIT,
    "lr": (1e-300, None, "a learning rate > 0"),
    "outer_lr": (1e-300, None, "a learning rate > 0"),
    "temperature": (1e-300, None, "a number > 0"),
    "lambda_min": (1e-300, None, "a number > 0"),
    "lambda_max": (1e-300, None, "a number > 0"),
    "lambda_grid": (1e-300, None, "numbers > 0"),
    "blend_grid": (1e-300, None, "numbers > 0"),
    "epochs": (1, None, "at least 1 epoch"),
    "hidden": (1, None, "layer widths >= 1"),
    "trunk": (1, None, "layer widths >= 1"),
    "query_size": (1, None, "at least 1 query image"),
    "val_shots": (1, None, "shot counts >= 1"),
    "support_shots": (1, None, "shot counts >= 1"),
    "practice_shots": (1, None, "shot counts >= 1"),
    "batch_size": (1, None, "at least 1"),
    "meta_batch": (1, None, "at least 1"),
    "neighbours": (1, None, "at least 1"),
    "n_components": (1, None, "at least 1"),
    "n_attributes": (1, None, "at least 1"),
    "n_content": (1, None, "at least 1"),
    "lambda_steps": (1, None, "at least 1"),
    "val_every": (1, None, "at least 1"),
    "val_repeats": (1, None, "at least 1"),
    "checkpoint_every": (1, None, "at least 1"),
    "practice_raters": (1, None, "at least 1"),
    "link_folds": (2, None, "at least 2 folds"),
    "folds": (1, None, "at least 1 fold (1: no cross-fitting)"),
}


def _field_problem(name: str, value: Any) -> str | None:
    """What `value` of field `name` should have been, or None when it is fine."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return "a finite number"
    rule = FIELD_RULES.get(name)
    if rule is None and (name.endswith("_lr") or name.endswith("_grid") or name in ("weight_decay",) or name.endswith("_weight")):
        rule = (0.0, None, "a number >= 0")
    if rule is None and isinstance(value, int):
        rule = (0, None, "a count >= 0")
    if rule is None:
        return None
    lo, hi, what = rule
    if value < lo or (hi is not None and value >= hi):
        return what
    return None


def _coerce(cls: type, name: str, value: Any) -> Any:
    """Turn a string from the command line (or a JSON value) into the field's declared type."""
    hints = typing.get_type_hints(cls)
    kind = hints.get(name, str)
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        kind = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(kind), typing.get_args(kind)
    try:
        if origin is tuple:
            items = value.split(",") if isinstance(value, str) else list(value)
            inner = args[0] if args else str
            return tuple(_scalar(inner, v) for v in items if str(v).strip() != "")
        return _scalar(kind, value)
    except (TypeError, ValueError):
        raise ConfigError(f"{cls.__name__}.{name}: cannot read {value!r} as {getattr(kind, '__name__', kind)}") from None


def _scalar(kind: Any, value: Any) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ValueError(value)
    if kind is int:
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        return int(str(value).strip()) if isinstance(value, str) else int(value)
    if kind is float:
        return float(value)
    if kind is str:
        return str(value)
    return value


class UserModel(ABC):
    """A method personalised to one rater. Scores are on the dataset's score scale."""

    @abstractmethod
    def predict(self, x: np.ndarray) -> np.ndarray:
        """Scores for feature rows `x` [n, dim] → [n] float64."""

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The per-user state worth storing (what differs from the prior); small by design."""
        return {}

    def predict_from_shared(self, shared: np.ndarray | None, x: np.ndarray) -> np.ndarray:
        """Scores [n] from `Method.shared_representation(x)` (computed once for many users) and the
        feature rows `x`. Equal to `predict(x)`; a method with a shared trunk overrides it to run
        only its per-user part on `shared` (and reads `x` only if that part needs it). Default:
        the full `predict(x)`."""
        return self.predict(x)


class Method(ABC):
    """Base class: constructors only store configuration; `fit` returns self.

    Capabilities are part of the interface, so callers ask instead of probing: `uses_big_five`,
    `notes()`, `can_share_prior` / `prior_shared`; `check_fitted()` raises `NotFittedError`.
    """

    name: ClassVar[str] = ""  # set by the registry (piaa/registry.py)
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    summary: ClassVar[str] = ""
    supports_distributed: ClassVar[bool] = False  # fit splits its work over torchrun's processes

    @property
    def uses_images(self) -> bool:
        """Whether the method trains end to end on images (its dataset rows are pixels, not features):
        a method offering that has a `backbone` config field, and a backbone is named."""
        return bool(getattr(self.config, "backbone", ""))
    #: attributes that stay None until `fit` or `load_state_dict` fills them (for `check_fitted`)
    fitted_attributes: ClassVar[tuple[str, ...]] = ()
    #: whether `fit` can reuse a prior trained earlier by an equal configuration (the benchmark's
    #: `shared_priors()`); `prior_shared` then says whether the last `fit` did
    can_share_prior: ClassVar[bool] = False
    prior_shared: bool = False
    #: whether `load_state_dict` also accepts numpy arrays (read with `np.asarray`), so loading a run
    #: (`piaa adapt`, `piaa score`) needs no torch: a cold start then costs a fraction of `import torch`
    loads_numpy_state: ClassVar[bool] = False

    def __init__(self, config: MethodConfig | None = None, **overrides: Any):
        cfg = config if config is not None else self.Config()
        if not isinstance(cfg, self.Config):
            raise ConfigError(f"{self.name} expects a {self.Config.__name__}, got {type(cfg).__name__}")
        if overrides:
            cfg = self.Config.from_dict({**cfg.to_dict(), **overrides})
        self.config = cfg.validate()
        if not type(self).__dict__.get("name"):  # built directly, not through the registry
            from piaa.registry import METHODS

            self.name = METHODS.name_of(type(self)) or type(self).name
        self.score_range: tuple[float, float] = (0.0, 1.0)
        self.feature_dim: int | None = None
        self.fit_log: list[dict[str, Any]] = []
        self._notes: list[str] = []  # set by fit (e.g. where an end-to-end backbone's weights came from); kept in the run

    # -- capabilities ----------------------------------------------------------------------------
    @property
    def uses_big_five(self) -> bool:
        """Whether `adapt` uses a rater's Big-Five (and so can predict from them alone at 0 shots)."""
        return False

    def notes(self) -> list[str]:
        """What this fitted model cannot do, in words a user can act on (printed by the CLI)."""
        return list(self._notes)

    def check_fitted(self, *attributes: str) -> None:
        """Raise `NotFittedError` unless `fit` (or `load_state_dict`) has run: the given attributes
        (default `fitted_attributes`) must no longer be None."""
        missing = [a for a in attributes or self.fitted_attributes if getattr(self, a, None) is None]
        if missing:
            raise NotFittedError(f"{self.name or type(self).__name__} is not fitted: call fit(data) first, or load a trained run")

    # -- learning --------------------------------------------------------------------------------
    @abstractmethod
    def fit(self, data: RaterDataset, *, seed: int = 0, progress: bool = False, checkpoint_dir: Path | None = None) -> "Method":
        """Learn the prior from `data`'s train (and personality) raters. Test raters are never passed.

        Long-running methods may save checkpoints in `checkpoint_dir` and resume from them.
        """

    @abstractmethod
    def adapt(
        self,
        x_support: np.ndarray,
        y_support: np.ndarray,
        *,
        big_five: np.ndarray | None = None,
        seed: int = 0,
    ) -> UserModel:
        """Personalise from a rater's support set (possibly empty: the prior, or Big-Five only)."""

    def user_model_from_state(self, state: Mapping[str, torch.Tensor]) -> UserModel | None:
        """Rebuild a `UserModel` from what its `state_dict()` returned (stored user profiles).

        Optional: the default None makes the profile store keep the support set instead and rebuild
        by calling `adapt` again with the stored seed, which is equally exact since `adapt` is
        deterministic, only larger.
        """
        return None

    # -- state -----------------------------------------------------------------------------------
    @abstractmethod
    def state_dict(self) -> dict[str, torch.Tensor]:
        """All learned state as tensors (saved with safetensors)."""

    @abstractmethod
    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Restore what `state_dict` returned (called on a freshly constructed method)."""

    # -- scoring many images for many users ---------------------------------------------------------
    def shared_representation(self, x: np.ndarray) -> np.ndarray | None:
        """Per-image outputs of the user-independent part of every user model (the trunk), [n, k]
        float64, or None when the whole model is per-user (the default: methods that adapt the full
        network). Computed once per feature file and cached (piaa/shared_cache.py), it lets
        `UserModel.predict_from_shared` score a user with only the small per-user part."""
        return None

    def extra_state(self) -> dict[str, Any]:
        """JSON-able learned state beside the tensors (score range, feature dim)."""
        state = {"score_range": list(self.score_range), "feature_dim": self.feature_dim}
        return {**state, "notes": list(self._notes)} if self._notes else state

    def load_extra_state(self, extra: Mapping[str, Any]) -> None:
        self.score_range = tuple(float(v) for v in extra["score_range"])  # type: ignore[assignment]
        self.feature_dim = extra.get("feature_dim")
        self._notes = [str(n) for n in extra.get("notes", [])]

    def _remember_data(self, data: RaterDataset) -> None:
        self.score_range = data.score_range
        self.feature_dim = data.feature_dim

    def check_features(self, x: np.ndarray, where: str = "features") -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or (self.feature_dim is not None and x.shape[1] != self.feature_dim):
            raise ConfigError(f"{where}: expected an array [n, {self.feature_dim}], got shape {tuple(x.shape)}")
        return x
