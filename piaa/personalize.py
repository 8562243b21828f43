"""The personalisation API: adapt a trained run to one user from a few ratings, keep it, score later.

    model = piaa.load()                                   # a run directory; default the latest run
    profile = model.adapt(images, scores, user="alice")   # images: feature rows, dataset ids or paths
    model.profiles.save(profile)                          # <run>/profiles.sqlite
    model.profiles.load("alice").rank(features, top=10)   # days later, in another process

A profile is rebuilt from its stored state with `Method.user_model_from_state`; for a method that
cannot do that, the support set is stored too and the profile is rebuilt by adapting again with the
stored seed, which gives the same model because `adapt` is deterministic.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

import piaa
from piaa.errors import DataError, PiaaError
from piaa.profiles import ProfileError, ProfileStore, decode_row, now
from piaa.threads import torch_threads

SMALL_BATCH = 2048  # up to this many images are scored on one thread
CHUNK = 32768  # larger inputs are scored in blocks of this many rows


# Something that turns image files into feature rows [n, dim] float32.
Extractor = Callable[[Sequence[str]], np.ndarray]
_USER = re.compile(r"^[^\x00-\x1f\x7f]{1,200}$")


def load(run: str | os.PathLike | None = None, *, extractor: Extractor | None = None) -> "Personalizer":
    """Load a trained run (default: the latest) as a model that adapts to users and scores images.

    `extractor` turns image paths into features; by default the feature extractor named by the
    run dataset's `backbone` is used (see docs/api.md), if one is installed.
    """
    from piaa.runs import load_run

    return Personalizer(load_run(run), extractor=extractor)


def model_id(run_path: Path, info: dict[str, Any]) -> str:
    """`<method>-<16 hex>`: a hash of the learned weights and the resolved configuration."""
    digest = hashlib.sha256()
    digest.update(json.dumps({k: info.get(k) for k in ("method", "config", "extra_state")}, sort_keys=True).encode())
    with open(run_path / "weights.safetensors", "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return f"{info['method']}-{digest.hexdigest()[:16]}"


def _user_id(user: Any) -> str:
    text = str(user).strip() if user is not None else ""
    if not _USER.match(text):
        raise DataError("user", f"expected a non-empty user id of at most 200 printable characters, got {user!r}")
    return text


@dataclass(eq=False)
class Profile:
    """One user's adapted model plus what it was adapted from. Scores are on the dataset's scale."""

    user: str
    model_id: str
    method: str
    user_model: Any  # piaa.method.UserModel
    scores: np.ndarray  # the user's ratings, float64 [n]
    images: list[str] | None  # names of the rated images (dataset ids or paths); None if given as features
    features_sha256: str  # hash of the support features, so "same ratings" can be checked
    big_five: list[float] | None = None
    seed: int = 0
    support: np.ndarray | None = None  # kept only when the method cannot rebuild from state
    model: "Personalizer | None" = field(default=None, repr=False)
    created: str = field(default_factory=now)
    updated: str = ""
    piaa_version: str = piaa.__version__
    stored_bytes: int | None = None

    def __post_init__(self) -> None:
        self.updated = self.updated or self.created

    @property
    def n_ratings(self) -> int:
        return int(len(self.scores))

    # -- scoring ------------------------------------------------------------------------------------
    def predict(self, images: Any) -> np.ndarray:
        """Personalised scores [n] for feature rows, dataset image ids or image paths."""
        x, _ = self._features(images)
        return self._predict(x)

    def _predict(self, x: np.ndarray, shared: np.ndarray | None = None) -> np.ndarray:
        """Scores in blocks of CHUNK rows: each block is converted, checked and scored while it is
        in cache, so a million memory-mapped rows never become a 1 GB copy or 1 GB activations.
        `shared`: the method's trunk outputs for `x` (`Personalizer.shared_for_file`), so only the
        per-user part runs; `x` is then read only by user models that need it."""
        if shared is not None:
            if len(shared) != len(x):
                raise PiaaError(f"shared outputs have {len(shared)} rows for {len(x)} feature rows")
            return np.asarray(self.user_model.predict_from_shared(shared, _LazyRows(x)), dtype=np.float64)
        if len(x) <= CHUNK:
            # Few rows: one thread (threads cost more than they save); many rows: torch's default.
            with torch_threads(1) if len(x) <= SMALL_BATCH else contextlib.nullcontext():
                return np.asarray(self.user_model.predict(_finite_rows(x, 0)), dtype=np.float64)
        out = np.empty(len(x), dtype=np.float64)
        for start in range(0, len(x), CHUNK):
            block = _finite_rows(x[start : start + CHUNK], start)
            out[start : start + len(block)] = np.asarray(self.user_model.predict(block), dtype=np.float64)
        return out

    def rank(self, images: Any, top: int | None = None, *, shared: np.ndarray | None = None) -> pd.DataFrame:
        """The `top` best images for this user, best first: rank, index (position in the input),
        image (when names were given) and score. Ties keep input order. `shared`: see `_predict`."""
        x, names = self._features(images)
        scores = self._predict(x, shared)
        order = top_k(scores, top)
        out = pd.DataFrame({"rank": np.arange(1, len(order) + 1), "index": order})
        if names is not None:
            out["image"] = [names[i] for i in order]
        out["score"] = scores[order]
        return out

    def _features(self, images: Any) -> tuple[np.ndarray, list[str] | None]:
        if self.model is None:
            raise ProfileError(f"profile of {self.user!r} is not attached to a model")
        return self.model.features(images, lazy=True)

    # -- serialisation --------------------------------------------------------------------------------
    def state_bytes(self) -> bytes:
        """The per-user tensors (and the support set, if needed) as safetensors bytes."""
        from safetensors.torch import save

        # clone: safetensors refuses tensors that share storage, which a method's state may do.
        tensors = {f"state.{k}": v.detach().cpu().clone().contiguous() for k, v in self.user_model.state_dict().items()}
        if self.support is not None:
            import torch

            tensors["support.x"] = torch.from_numpy(np.ascontiguousarray(self.support, dtype=np.float32))
            tensors["support.y"] = torch.from_numpy(np.ascontiguousarray(self.scores, dtype=np.float64))
        return save(tensors, metadata={"format": "piaa-profile", "model_id": self.model_id})

    def holds(self) -> str:
        """What the per-user state is, in words (how large a stored profile is, and why)."""
        if self.support is not None:
            return f"the {len(self.support)} rated inputs ({self.support.shape[1]:,} numbers each) and their scores, adapted again when loaded"
        n = sum(int(v.numel()) for v in self.user_model.state_dict().values())
        return f"{n:,} per-user numbers (what differs from the run's model)"

    def info(self) -> dict[str, Any]:
        """Metadata as a plain dict (JSON-able)."""
        return {
            "user": self.user, "method": self.method, "model_id": self.model_id, "n_ratings": self.n_ratings,
            "seed": self.seed, "big_five": self.big_five, "created": self.created, "updated": self.updated,
            "piaa_version": self.piaa_version, "bytes": self.stored_bytes,
        }


def _finite_rows(block: np.ndarray, offset: int) -> np.ndarray:
    """`block` as a writable contiguous float32 array whose values are all finite (else a DataError
    naming the first bad row, counted from the start of the whole input)."""
    block = np.ascontiguousarray(block, dtype=np.float32)
    if not block.flags.writeable:  # e.g. a memory-mapped .npy: torch wants its own writable copy
        block = block.copy()
    if not np.isfinite(block.sum(axis=1)).all():  # a row sum is NaN/inf iff the row has one (or overflows)
        bad = ~np.isfinite(block).all(axis=1)
        if bad.any():
            raise DataError("images", f"feature row {offset + int(np.flatnonzero(bad)[0])} has NaN or inf values")
    return block


class _LazyRows:
    """Feature rows handed to `UserModel.predict_from_shared`: a user model that reads them (ridge's
    linear part) gets them checked block by block like `Profile._predict` does; one that does not
    costs nothing."""

    def __init__(self, x: np.ndarray):
        self.x = x
        self.shape = x.shape

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, rows) -> np.ndarray:
        if not isinstance(rows, slice) or rows.step not in (None, 1):
            raise TypeError("feature rows are read in contiguous blocks")
        start = rows.start or 0
        return _finite_rows(self.x[rows], start)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = np.empty(self.x.shape, dtype=np.float32)
        for start in range(0, len(self.x), CHUNK):
            out[start : start + CHUNK] = _finite_rows(self.x[start : start + CHUNK], start)
        return out if dtype is None else out.astype(dtype)


def top_k(scores: np.ndarray, top: int | None) -> np.ndarray:
    """Indices of the `top` highest scores, highest first; equal scores keep input order."""
    n = len(scores)
    if top is not None and top < 0:
        raise DataError("top", f"expected a count >= 0, got {top}")
    if top is None or top >= n:
        return np.argsort(-scores, kind="stable")
    if top == 0:
        return np.zeros(0, dtype=np.int64)
    cut = np.partition(scores, n - top)[n - top]  # the top-th highest value
    above = np.flatnonzero(scores > cut)
    at = np.flatnonzero(scores == cut)[: top - len(above)]
    chosen = np.concatenate([above, at])
    return chosen[np.argsort(-scores[chosen], kind="stable")]


class Personalizer:
    """A trained run, ready to adapt to users and score images for them."""

    def __init__(self, run: Any, *, extractor: Extractor | None = None):
        self.run = run
        self.method = run.method
        self.path = Path(run.path).resolve()
        self.method_name = str(run.info["method"])
        self.score_range = tuple(float(v) for v in self.method.score_range)
        self.feature_dim = self.method.feature_dim
        self.model_id = model_id(self.path, run.info)
        self._extractor = extractor

    def __repr__(self) -> str:
        return f"<piaa model {self.model_id} from {self.path}>"

    @cached_property
    def profiles(self) -> ProfileStore:
        """The default profile store of this model: `<run>/profiles.sqlite`."""
        return ProfileStore(model=self)

    @cached_property
    def dataset(self):
        """The run's rater dataset (read on first use: image ids are looked up in it)."""
        try:
            return self.run.load_data()
        except PiaaError as exc:
            raise PiaaError(f"the dataset of run {self.path} ({self.run.data_ref}) cannot be read, so image ids cannot be looked up: {exc}") from None

    # -- inputs ---------------------------------------------------------------------------------------
    def features(self, images: Any, *, source: str = "images", line_base: int | None = None, lazy: bool = False) -> tuple[np.ndarray, list[str] | None]:
        """Feature rows for `images`: an array [n, dim] (used as is), or dataset image ids and image
        paths (looked up / extracted). Returns (features float32 [n, dim], names or None)."""
        if isinstance(images, (str, os.PathLike)):
            images = [images]
        if hasattr(images, "detach"):  # a torch tensor
            images = images.detach().cpu().numpy()
        if isinstance(images, np.ndarray) and images.dtype.kind in "fiu":
            return self._check_dim(images, source, lazy=lazy), None
        names = [os.fspath(i) if isinstance(i, os.PathLike) else str(i) for i in images]
        if not names:
            return np.zeros((0, self.feature_dim or 0), dtype=np.float32), []
        return self._lookup(names, source, line_base), names

    def _check_dim(self, x: np.ndarray, source: str, lazy: bool = False) -> np.ndarray:
        """Shape, dtype and finiteness checked; `lazy` (scoring) leaves big arrays as they are for
        `Profile._predict`, which converts and checks them block by block."""
        x = np.asarray(x)
        if x.ndim != 2 or (self.feature_dim is not None and x.shape[1] != self.feature_dim):
            raise DataError(source, f"expected features of shape [n, {self.feature_dim}] (this model's feature dimension), got {tuple(x.shape)}")
        if lazy and len(x) > CHUNK:
            return x
        x = np.ascontiguousarray(x, dtype=np.float32)
        if not x.flags.writeable:  # e.g. a memory-mapped .npy: torch wants its own writable copy
            x = x.copy()
        if not np.isfinite(x).all():
            row = int(np.flatnonzero(~np.isfinite(x).all(axis=1))[0])
            raise DataError(source, f"feature row {row} has NaN or inf values")
        return x

    def shared_for_file(self, path: str | os.PathLike, x: np.ndarray) -> np.ndarray | None:
        """The method's trunk outputs for the rows `x` of feature file `path`, cached in
        `<run>/shared/` by this model's id and the file's content (piaa/shared_cache.py); None when
        the method has no user-independent trunk."""
        from piaa.shared_cache import cached_shared

        return cached_shared(self.method, self.model_id, self.path, Path(path), x, chunk=CHUNK, check=_finite_rows)

    def _where(self, i: int, line_base: int | None) -> dict[str, Any]:
        return {"line": i + line_base, "field": "image"} if line_base is not None else {"field": f"image {i}"}

    def _lookup(self, names: list[str], source: str, line_base: int | None) -> np.ndarray:
        try:
            data = self.dataset
            positions = data.images.get_indexer(names)
            label = data.name
        except PiaaError:
            if not all(Path(n).expanduser().is_file() for n in names):
                raise
            positions, label = np.full(len(names), -1), "?"
        out = np.empty((len(names), self.feature_dim or 0), dtype=np.float32)
        known = positions >= 0
        if known.any():
            rows = positions[known]
            order = np.argsort(rows)  # read a memory-mapped file in order
            block = np.empty((len(rows), data.feature_dim), dtype=np.float32)
            block[order] = np.asarray(data.features[rows[order]], dtype=np.float32)
            out[known] = self._check_dim(block, f"dataset {label} features")
        missing = np.flatnonzero(~known)
        if len(missing):
            paths = []
            for i in missing:
                path = Path(names[i]).expanduser()
                if not path.is_file():
                    raise DataError(source, f"{names[i]!r} is neither an image id of dataset {label} nor an existing image file", **self._where(i, line_base))
                paths.append(str(path))
            out[missing] = self._check_dim(self._extract(paths), f"features extracted from {paths[0]}")
        return out

    def _extract(self, paths: list[str]) -> np.ndarray:
        if self._extractor is None:
            self._extractor = self._default_extractor()  # built once: backbones can be slow to load
        extractor = self._extractor
        x = np.asarray(extractor(paths))
        if x.ndim != 2 or len(x) != len(paths):
            raise PiaaError(f"the feature extractor returned shape {tuple(x.shape)} for {len(paths)} images")
        return x

    def _default_extractor(self) -> Extractor:
        """The backbone that made the run dataset's features (dataset.json `backbone`), so image
        files get exactly the features the model was trained on."""
        try:
            meta = self.dataset.meta
        except PiaaError:
            meta = {}
        if self.method.uses_images:  # trained end to end: an image file's row is its pixels
            from piaa.tasks.images import decode, image_transform

            transform = image_transform(meta)
            return lambda paths: np.stack([decode(Path(p), transform) for p in paths])
        backbone = meta.get("backbone")
        hint = "pass feature arrays or image ids of the run's dataset instead of image files"
        if not backbone:
            raise PiaaError(f"image files need a feature extractor, but the run's dataset names no backbone (dataset.json 'backbone' is null); {hint}")
        weights = (meta.get("feature_store") or {}).get("weights")
        if weights is not None and not Path(str(weights)).is_file():
            weights = None  # a name or hash of the published weights, not a file: use the published ones
        try:
            from piaa.features import create_backbone
        except ImportError:
            raise PiaaError(f"image files need the feature extractor {backbone!r}, but piaa.features is not available; {hint}") from None
        model = create_backbone(backbone, weights=weights)
        return lambda paths: embed_images(model, paths)

    def _check_scores(self, scores: Any, source: str, line_base: int | None) -> np.ndarray:
        try:
            y = np.asarray(scores, dtype=np.float64)
        except (TypeError, ValueError):
            raise DataError(source, "expected a list of numbers") from None
        if y.ndim != 1:
            raise DataError(source, f"expected a 1-D list of scores, got shape {tuple(y.shape)}")
        lo, hi = self.score_range
        bad = np.flatnonzero(~np.isfinite(y) | (y < lo) | (y > hi))
        if len(bad):
            i = int(bad[0])
            where = {"line": i + line_base, "field": "score"} if line_base is not None else {"field": f"score {i}"}
            raise DataError(source, f"expected a score in [{lo:g}, {hi:g}] (the model's score range), got {y[i]:g}", **where)
        return y

    def _check_big_five(self, big_five: Any) -> list[float] | None:
        from piaa.tasks.format import parse_big_five

        return None if big_five is None else parse_big_five(big_five).tolist()

    # -- adapting and scoring -------------------------------------------------------------------------
    def adapt(
        self, images: Any, scores: Any, *, user: str, big_five: Any = None, seed: int = 0,
        source: str = "ratings", line_base: int | None = None,
    ) -> Profile:
        """Adapt to one user from their rated images (feature rows, dataset ids or paths) and scores.

        Returns an unsaved `Profile`; `model.profiles.save(profile)` keeps it.
        """
        user = _user_id(user)
        y = self._check_scores(scores, source, line_base)
        b5 = self._check_big_five(big_five)
        if len(y) == 0 and not (b5 is not None and self.method.uses_big_five):
            needs = "" if self.method.uses_big_five else f" ({self.method_name} does not use Big-Five traits)"
            raise DataError(source, f"no ratings given for user {user!r}: a profile needs at least one rated image{needs}")
        x, names = self.features(images, source=source, line_base=line_base)
        if len(x) != len(y):
            raise DataError(source, f"got {len(x)} images but {len(y)} scores (one score per image)")
        if names is not None:
            seen: dict[str, int] = {}
            for i, name in enumerate(names):
                if name in seen:
                    raise DataError(source, f"image {name!r} is rated twice (first as rating {seen[name]})", **self._where(i, line_base))
                seen[name] = i
        seed = int(seed)
        b5_array = np.asarray(b5, dtype=np.float32) if b5 is not None else None
        with torch_threads(1):  # tiny work: threads only wait for each other on a busy machine
            user_model = self.method.adapt(x, y.astype(np.float32), big_five=b5_array, seed=seed)
            user_model, support = self._restorable(user_model, x)
        return Profile(
            user=user, model_id=self.model_id, method=self.method_name, user_model=user_model, scores=y,
            images=names, features_sha256=hashlib.sha256(x.tobytes()).hexdigest(), big_five=b5, seed=seed,
            support=support, model=self,
        )

    def _restorable(self, user_model: Any, x: np.ndarray) -> tuple[Any, np.ndarray | None]:
        """Use the model rebuilt from its own state when that reproduces it, so a profile scores the
        same before and after a save; otherwise keep the support set for re-adapting on load."""
        state = {k: v.detach().cpu().clone().contiguous() for k, v in user_model.state_dict().items()}
        rebuilt = self.method.user_model_from_state(state)
        if rebuilt is None:
            return user_model, x
        if len(x):
            a, b = user_model.predict(x), rebuilt.predict(x)
            if not np.allclose(a, b, rtol=0, atol=1e-4 * (self.score_range[1] - self.score_range[0])):
                return user_model, x
        return rebuilt, None

    def restore(self, row: dict[str, Any]) -> Profile:
        """Rebuild a stored profile (a row of the profile store)."""
        from safetensors import SafetensorError
        from safetensors.torch import load

        user = row["user"]
        ratings, big_five = decode_row(row)
        try:
            tensors = load(row["state"])
        except (SafetensorError, ValueError) as exc:
            raise ProfileError(f"the stored profile of user {user!r} is damaged ({exc}); re-adapt this user") from None
        state = {k[len("state."):]: v for k, v in tensors.items() if k.startswith("state.")}
        support = tensors["support.x"].numpy() if "support.x" in tensors else None
        scores = np.asarray(ratings["scores"], dtype=np.float64)
        if support is not None:
            b5 = np.asarray(big_five, dtype=np.float32) if big_five is not None else None
            with torch_threads(1):
                user_model = self.method.adapt(support, scores.astype(np.float32), big_five=b5, seed=int(row["seed"]))
        else:
            try:
                user_model = self.method.user_model_from_state(state)
            except (KeyError, RuntimeError, ValueError) as exc:
                raise ProfileError(f"the stored state of user {user!r} does not fit model {self.model_id} ({exc}); re-adapt this user") from None
            if user_model is None:
                raise ProfileError(f"{self.method_name} cannot rebuild the profile of {user!r} from its state and no ratings are stored; re-adapt this user")
        return Profile(
            user=user, model_id=row["model_id"], method=row["method"], user_model=user_model, scores=scores,
            images=ratings.get("images"), features_sha256=ratings.get("features_sha256", ""), big_five=big_five,
            seed=int(row["seed"]), support=support, model=self, created=row["created"], updated=row["updated"],
            piaa_version=row["piaa_version"], stored_bytes=len(row["state"]),
        )

    def score(self, images: Any, *, user: str, store: ProfileStore | None = None) -> np.ndarray:
        """Personalised scores of `images` for a stored user (default store: next to the run)."""
        return (store or self.profiles).load(user).predict(images)

    def rank(self, images: Any, *, user: str, top: int | None = None, store: ProfileStore | None = None) -> pd.DataFrame:
        """`Profile.rank` for a stored user."""
        return (store or self.profiles).load(user).rank(images, top=top)


def read_ratings(path: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """A user's ratings CSV with columns image,score (one row per image). Scores are range-checked
    when adapting; here only that they are numbers."""
    from piaa.tasks.format import _read_csv  # the dataset reader's CSV checks and messages

    file = Path(path)
    df = _read_csv(file, ["image", "score"])
    name = str(file)
    if len(df) == 0:
        raise DataError(name, "has a header but no ratings (expected rows image,score)", line=2)
    images = df["image"].str.strip()
    empty = np.flatnonzero((images == "").to_numpy())
    if len(empty):
        raise DataError(name, "empty image name", line=int(empty[0]) + 2, field="image")
    values = pd.to_numeric(df["score"].str.strip(), errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(np.isnan(values))
    if len(bad):
        raise DataError(name, f"expected a number, got {df['score'].iloc[int(bad[0])]!r}", line=int(bad[0]) + 2, field="score")
    return images.tolist(), values


def read_feature_rows(path: str | os.PathLike, dim: int | None = None) -> np.ndarray:
    """Feature rows to score from a .npy file: float [n, dim], memory-mapped; anything else is a
    DataError naming the file (empty, not .npy, pickled, truncated, wrong dtype or shape)."""
    from piaa.tasks.format import load_npy

    name = str(path)
    x = load_npy(path, name)
    if x.dtype.kind != "f":
        raise DataError(name, f"expected float feature rows [n, {dim or 'dim'}], got dtype {x.dtype}")
    if x.ndim != 2 or (dim is not None and x.shape[1] != dim):
        raise DataError(name, f"expected feature rows of shape [n, {dim or 'dim'}] (the model's feature dimension), got {tuple(x.shape)}")
    return x


def adapt_from_csv(model: Personalizer, path: str | os.PathLike, *, user: str, big_five: Any = None, seed: int = 0) -> Profile:
    """`model.adapt` from a ratings CSV, with errors naming the CSV's line and field."""
    images, scores = read_ratings(path)
    return model.adapt(images, scores, user=user, big_five=big_five, seed=seed, source=str(path), line_base=2)


def embed_images(backbone: Any, paths: Sequence[str]) -> np.ndarray:
    """Features of image files with a `piaa.features` backbone (its own decoding and preprocessing)."""
    from PIL import Image, UnidentifiedImageError

    prepared = []
    for path in paths:
        try:
            with Image.open(path) as image:
                prepared.append(backbone.prepare(image))
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            raise DataError(str(path), f"cannot be read as an image ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    return np.asarray(backbone.embed(prepared), dtype=np.float32)
