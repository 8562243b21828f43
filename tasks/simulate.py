"""The embedded demo: a simulated rater dataset shaped like FLICKR-AES, with known ground truth.

Every image has a latent description z. Its feature vector is a noisy nonlinear view of z (like a
CNN embedding). A rater's opinion of an image is

    opinion = generic(z) + taste_u · attributes(z)           taste_u = B · big_five_u + own_u
    score   = round(centre + scale_u · opinion + bias_u + noise), clipped to 1..5

so part of each rater's taste is predictable from their Big-Five, part is idiosyncratic, and the
shared generic quality is nonlinear in the features. Because the truth is known, the dataset records
its own ceilings (see `docs/demo.md`), which makes numbers on it interpretable.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from piaa.seeding import numpy_rng
from piaa.tasks.format import BIG_FIVE, write_dataset

DEMO_VERSION = 1
DEMO_USER = "42"


@dataclass(frozen=True)
class DemoSpec:
    n_train_raters: int = 150
    n_test_raters: int = 30
    n_personality_raters: int = 80
    raters_per_image: int = 5
    train_ratings: tuple[int, int] = (60, 200)  # per train rater, uniform
    test_ratings: tuple[int, int] = (100, 250)  # per test rater, uniform
    likes_per_personality_rater: int = 50
    feature_dim: int = 256
    latent_dim: int = 24
    n_attributes: int = 6
    personal_weight: float = 0.9  # taste variance relative to generic variance
    big_five_share: float = 0.5  # share of taste variance explained by Big-Five
    noise: float = 0.55  # per-rating noise, in units of opinion std
    bias_std: float = 0.35
    log_scale_std: float = 0.25
    train_big_five_known: bool = False  # True: PARA-shaped (every rater's Big-Five is known)
    rating_attributes: bool = False  # True: per-rating attribute scores (attributes.csv), as PARA has
    attribute_noise: float = 0.7  # a rater's attribute score: truth + this much noise (units of the truth's std)


class _World:
    """The fixed (seeded) functions that map latents to features, quality and attributes."""

    def __init__(self, spec: DemoSpec, rng: np.random.Generator):
        L, d, m = spec.latent_dim, spec.feature_dim, spec.n_attributes
        self.spec = spec
        self.w_feat = rng.normal(0, 1 / np.sqrt(L), size=(L, d))
        self.b_feat = rng.normal(0, 0.3, size=d)
        self.a = rng.normal(0, 1 / np.sqrt(L), size=(4, L))
        self.p_attr = rng.normal(0, 1.5 / np.sqrt(L), size=(L, m))
        # Big-Five → taste: scaled so Big-Five explains `big_five_share` of taste variance.
        self.b_taste = rng.normal(0, 1, size=(m, 5))

    def features(self, z: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h = z @ self.w_feat + self.b_feat + rng.normal(0, 0.25, size=(len(z), self.spec.feature_dim))
        return np.maximum(h, 0.0).astype(np.float32)  # post-ReLU like a CNN embedding

    def generic(self, z: np.ndarray) -> np.ndarray:
        u = z @ self.a.T
        q = np.tanh(1.5 * u[:, 0]) + 0.7 * np.sin(2.0 * u[:, 1]) + 0.5 * u[:, 2] * u[:, 3]
        return q

    def attributes(self, z: np.ndarray) -> np.ndarray:
        return np.tanh(z @ self.p_attr)


def _big_five(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.clip(rng.normal(0, 0.45, size=(n, 5)), -1, 1)


def _assign(counts: np.ndarray, per_image: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Rater positions for each image: every image gets `per_image` distinct raters, counts ≈ targets."""
    remaining = counts.astype(np.float64).copy()
    n_images = int(np.ceil(counts.sum() / per_image))
    out = []
    for _ in range(n_images):
        pick = np.argpartition(-(remaining + rng.uniform(0, 0.5, size=len(remaining))), per_image - 1)[:per_image]
        remaining[pick] -= 1
        out.append(np.sort(pick))
    return out


def simulate(spec: DemoSpec = DemoSpec(), seed: int = 0) -> dict:
    """Build the demo in memory: tables, features and the ground truth used for ceilings."""
    rng = numpy_rng(seed, "demo", DEMO_VERSION)
    world = _World(spec, rng)
    m = spec.n_attributes
    n_raters = spec.n_train_raters + spec.n_test_raters

    # Raters: numeric ids in a seeded order, with "42" always among the test raters.
    ids = np.array([str(i) for i in range(1, n_raters + 1)])
    others = rng.permutation([i for i in ids if i != DEMO_USER])
    test_ids = [DEMO_USER] + sorted(others[: spec.n_test_raters - 1].tolist(), key=int)
    train_ids = sorted(others[spec.n_test_raters - 1 :].tolist(), key=int)
    psy_ids = [f"psy{i:03d}" for i in range(1, spec.n_personality_raters + 1)]
    all_ids = train_ids + test_ids + psy_ids
    n_all = len(all_ids)
    big5 = _big_five(rng, n_all)
    taste_from_b5 = big5 @ world.b_taste.T
    own = rng.normal(0, 1, size=(n_all, m))
    share = spec.big_five_share
    taste = np.sqrt(share) * taste_from_b5 / taste_from_b5.std(axis=0) + np.sqrt(1 - share) * own
    bias = rng.normal(0, spec.bias_std, size=n_all)
    scale = np.exp(rng.normal(0, spec.log_scale_std, size=n_all))
    index = {u: i for i, u in enumerate(all_ids)}

    # Images: separate pools for train and test raters (disjoint images), plus likes from the train pool.
    train_counts = rng.integers(spec.train_ratings[0], spec.train_ratings[1] + 1, size=len(train_ids))
    test_counts = rng.integers(spec.test_ratings[0], spec.test_ratings[1] + 1, size=len(test_ids))
    train_groups = _assign(train_counts, spec.raters_per_image, rng)
    test_groups = _assign(test_counts, spec.raters_per_image, rng)
    n_images = len(train_groups) + len(test_groups)
    z = rng.normal(0, 1, size=(n_images, spec.latent_dim))
    features = world.features(z, rng)
    generic = world.generic(z)
    attrs = world.attributes(z)
    generic = (generic - generic.mean()) / generic.std()
    attrs = (attrs - attrs.mean(axis=0)) / attrs.std(axis=0)
    personal_unit = np.sqrt(spec.personal_weight / m)
    images = np.array([f"demo_{i:05d}.jpg" for i in range(n_images)])

    def opinion(rater: int, rows: np.ndarray) -> np.ndarray:
        return generic[rows] + personal_unit * attrs[rows] @ taste[rater]

    rows_user, rows_image = [], []
    offset = 0
    for group_ids, groups in ((train_ids, train_groups), (test_ids, test_groups)):
        for j, raters in enumerate(groups):
            rows_user += [group_ids[r] for r in raters]
            rows_image += [offset + j] * len(raters)
        offset += len(groups)
    rows_image = np.asarray(rows_image)
    user_pos = np.array([index[u] for u in rows_user])
    clean = generic[rows_image] + personal_unit * np.einsum("ij,ij->i", attrs[rows_image], taste[user_pos])
    sd = np.sqrt(1 + spec.personal_weight)
    noisy = bias[user_pos] + scale[user_pos] * (clean + rng.normal(0, spec.noise * sd, size=len(clean))) / sd
    score = np.clip(np.rint(3.0 + 0.9 * noisy), 1, 5).astype(int)
    ratings = pd.DataFrame({"user": rows_user, "image": images[rows_image], "score": score})

    # Personality raters like their top images among a random slate of train-pool images.
    n_train_images = len(train_groups)
    like_user, like_image = [], []
    for u in psy_ids:
        slate = rng.choice(n_train_images, size=min(n_train_images, 8 * spec.likes_per_personality_rater), replace=False)
        utility = opinion(index[u], slate) + rng.gumbel(0, 0.3, size=len(slate))
        top = slate[np.argsort(-utility)[: spec.likes_per_personality_rater]]
        like_user += [u] * len(top)
        like_image += images[np.sort(top)].tolist()
    likes = pd.DataFrame({"user": like_user, "image": like_image})

    users = pd.DataFrame({"user": all_ids, "split": ["train"] * len(train_ids) + ["test"] * len(test_ids) + ["personality"] * len(psy_ids)})
    hidden = (users["split"] == "train") & (not spec.train_big_five_known)
    for k, col in enumerate(BIG_FIVE):
        # Train raters' Big-Five are unknown, as in FLICKR-AES (known in PARA-shaped data); test and personality raters have them.
        users[col] = np.where(hidden, np.nan, np.round(big5[:, k], 4))
    truth = {"clean": clean, "generic": generic[rows_image], "big_five_part": None}
    b5_part = generic[rows_image] + personal_unit * np.einsum(
        "ij,ij->i", attrs[rows_image], np.sqrt(share) * (taste_from_b5 / taste_from_b5.std(axis=0))[user_pos]
    )
    truth["big_five_part"] = b5_part
    # Per image and per rater, for oracles that know the structure (piaa.priors.structure_limit).
    truth["structure"] = {
        "images": images, "generic": generic, "attributes": attrs, "personal_unit": float(personal_unit),
        "raters": np.asarray(all_ids), "taste_big_five": np.sqrt(share) * taste_from_b5 / taste_from_b5.std(axis=0),
        "taste_own_var": 1.0 - share, "scale": scale, "bias": bias, "opinion_sd": float(sd), "noise": spec.noise,
    }
    attributes = _rating_attributes(spec, seed, ratings, rows_image, user_pos, generic, attrs) if spec.rating_attributes else None
    return {"ratings": ratings, "users": users, "images": images, "features": features, "likes": likes, "truth": truth, "attributes": attributes}


# PARA's image attributes, simulated: overall quality is the generic quality, the others are the first
# latent attributes that tastes weigh (the last latent attribute stays unobserved).
SIMULATED_ATTRIBUTES = ("quality", "composition", "color", "dof", "content", "light")


def _rating_attributes(spec: DemoSpec, seed: int, ratings: pd.DataFrame, rows_image: np.ndarray, user_pos: np.ndarray,
                       generic: np.ndarray, attrs: np.ndarray) -> pd.DataFrame:
    """Each rating's attribute scores on PARA's 1..5 scale: the image's true attribute plus a rater
    bias and noise. Drawn from their own seeded stream, so the ratings are the same with or without."""
    rng = numpy_rng(seed, "demo", DEMO_VERSION, "attributes")
    truth = np.column_stack([generic, attrs[:, : len(SIMULATED_ATTRIBUTES) - 1]])[rows_image]
    bias = rng.normal(0, 0.3, size=(int(user_pos.max()) + 1, truth.shape[1]))[user_pos]
    noisy = truth + bias + rng.normal(0, spec.attribute_noise, size=truth.shape)
    scores = np.clip(np.rint(3.0 + 0.9 * noisy), 1, 5)
    return pd.DataFrame({"user": ratings["user"], "image": ratings["image"], **{n: scores[:, k] for k, n in enumerate(SIMULATED_ATTRIBUTES)}})


def ceilings(ratings: pd.DataFrame, users: pd.DataFrame, truth: dict) -> dict[str, float]:
    """Mean over test raters of SROCC between observed scores and (a) the noiseless opinion (the
    ceiling), (b) the generic quality alone, (c) generic + the Big-Five-predictable part of taste."""
    from scipy.stats import spearmanr

    test = set(users.loc[users["split"] == "test", "user"])
    out = {}
    for key, name in (("clean", "ceiling_srocc"), ("generic", "generic_oracle_srocc"), ("big_five_part", "big_five_oracle_srocc")):
        values = []
        for user, rows in ratings.groupby("user").indices.items():
            if user in test:
                values.append(spearmanr(truth[key][rows], ratings["score"].to_numpy()[rows]).statistic)
        out[name] = round(float(np.mean(values)), 4)
    return out


def write_demo(path: str | Path, seed: int = 0, spec: DemoSpec = DemoSpec(), overwrite: bool = False) -> Path:
    """Simulate and write the demo as a rater dataset at `path`."""
    sim = simulate(spec, seed)
    meta = {
        "description": "piaa demo: simulated raters shaped like FLICKR-AES (synthetic data, see docs/demo.md)",
        "simulation": {"version": DEMO_VERSION, "seed": seed, **{k: list(v) if isinstance(v, tuple) else v for k, v in asdict(spec).items()}},
        "ground_truth": ceilings(sim["ratings"], sim["users"], sim["truth"]),
    }
    return write_dataset(
        path, name="piaa-demo", score_range=(1, 5), ratings=sim["ratings"], users=sim["users"],
        images=sim["images"], features=sim["features"], likes=sim["likes"], meta=meta, overwrite=overwrite, attributes=sim["attributes"],
    )


# PARA: every rater's Big-Five known, many ratings each, per-rating attribute scores
PARA_SHAPED = DemoSpec(train_big_five_known=True, train_ratings=(300, 600), raters_per_image=10, rating_attributes=True)


def demo_dir(seed: int = 0) -> Path:
    """Where the cached demo lives: $PIAA_DEMO_DIR, else $XDG_CACHE_HOME/piaa or ~/.cache/piaa."""
    explicit = os.environ.get("PIAA_DEMO_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "piaa"
    return base / f"demo-v{DEMO_VERSION}-seed{seed}"


def ensure_demo(seed: int = 0) -> Path:
    """The demo dataset directory, generated on first use (deterministically) and cached."""
    path = demo_dir(seed)
    if (path / "dataset.json").is_file():
        return path
    try:
        return write_demo(path, seed=seed)
    except FileExistsError:  # another process finished it first
        return path
