"""Validation splits of the training raters: which ratings a method may fit, which it validates on.

Model selection should face what the test protocol faces. Test raters (FLICKR-AES, the demo) rate
images that no training rater rated, so validating on held-out raters whose images stay in training
rewards memorising those images (each demo image has 5 raters: half of what meta-training saw was
validation raters' images). Two splits:

- `rater_split`: held-out raters, images shared with training (the older split).
- `image_disjoint_split`: held-out raters R_v and held-out images V. Fitting uses only ratings
  (r ∉ R_v, image ∉ V); validation uses only ratings (r ∈ R_v, image ∈ V), so no validation image
  is seen by pre-training or meta-training. V is drawn from the validation raters' own images (a
  seeded share, all of them by default): every held-out image then serves validation, and with
  the whole share the validation raters keep all their ratings, so the validation shot counts
  (10 and 100) stay as feasible as they are for test raters. The price is the other raters' ratings
  of V (about 4 per held-out image on the demo), which fitting loses.

Only raters with at least `min_ratings` ratings can be validation raters (the protocol's rule: a
rater needs shots + 10 images); the rest stay training raters.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from piaa.errors import ConfigError
from piaa.seeding import numpy_rng
from piaa.tasks.format import Rater, RaterDataset

SPLITS = ("image-disjoint", "raters")


@dataclass(frozen=True)
class ValidationSplit:
    kind: str
    train: list[Rater]  # the ratings fitting may use, in a seeded order
    validation: list[Rater]  # the validation raters' ratings that validation scores
    held_out_images: np.ndarray  # V: sorted feature rows no training rating touches (empty for "raters")
    dropped_ratings: int  # training raters' ratings of held-out images, and validation raters' outside V
    skipped_raters: int  # raters left with too few ratings (validation: < min_ratings; training: < 2)

    def summary(self) -> dict:
        """Counts for a fit log: what the split kept and what it cost."""
        return {"val_split": self.kind, "val_raters": len(self.validation), "val_ratings": int(sum(len(r) for r in self.validation)),
                "train_raters": len(self.train), "train_ratings": int(sum(len(r) for r in self.train)),
                "held_out_images": int(len(self.held_out_images)), "dropped_ratings": self.dropped_ratings,
                "skipped_raters": self.skipped_raters}

    def training_data(self, data: RaterDataset) -> RaterDataset:
        """`data` with only the training ratings (for pre-training on the consensus score); the
        validation raters drop out of users.csv's train split (marked "validation")."""
        train_users = {r.user for r in self.train}
        keep = data.ratings["user"].isin(train_users).to_numpy().copy()
        if len(self.held_out_images):
            keep &= ~np.isin(data.ratings["image_index"].to_numpy(), self.held_out_images)
        users = data.users.copy()
        users.loc[(users["split"] == "train") & ~users["user"].isin(train_users), "split"] = "validation"
        return dataclasses.replace(data, ratings=data.ratings[keep].reset_index(drop=True), users=users)


def _subset(rater: Rater, keep: np.ndarray) -> Rater:
    return dataclasses.replace(rater, image_index=rater.image_index[keep], scores=rater.scores[keep])


def _n_validation(n_raters: int, val_fraction: float) -> int:
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}")
    return min(int(round(n_raters * val_fraction)) if val_fraction > 0 else 0, n_raters - 1)


def rater_split(raters: list[Rater], val_fraction: float, seed: int) -> ValidationSplit:
    """A seeded share of the raters held out whole; their images stay in the training raters' ratings."""
    order = numpy_rng(seed, "validation-raters").permutation(len(raters))
    n_val = _n_validation(len(raters), val_fraction)
    return ValidationSplit("raters", [raters[i] for i in order[n_val:]], [raters[i] for i in order[:n_val]],
                           np.zeros(0, dtype=np.int64), 0, 0)


def image_disjoint_split(raters: list[Rater], val_fraction: float, seed: int, *, min_ratings: int, image_share: float = 1.0) -> ValidationSplit:
    """Validation raters R_v (a seeded share of the raters with >= `min_ratings` ratings) and held-out
    images V (a seeded `image_share` of R_v's images); see the module docstring."""
    if not 0.0 < image_share <= 1.0:
        raise ConfigError(f"val_image_share must be in (0, 1], got {image_share}")
    n_val = _n_validation(len(raters), val_fraction)
    if n_val == 0:
        return ValidationSplit("image-disjoint", list(raters), [], np.zeros(0, dtype=np.int64), 0, 0)
    eligible = [i for i, r in enumerate(raters) if len(r) >= min_ratings]
    if not eligible:
        raise ConfigError(f"image-disjoint validation needs train raters with at least {min_ratings} ratings "
                          f"(the smallest validation shot count + 10 query images); none of {len(raters)} has, "
                          f"the most is {max((len(r) for r in raters), default=0)} (set val_fraction=0 to fit without validation)")
    order = numpy_rng(seed, "validation-raters").permutation(len(raters))
    allowed = set(eligible)
    chosen = [int(i) for i in order if int(i) in allowed][:n_val]
    in_val = np.zeros(len(raters), dtype=bool)
    in_val[chosen] = True
    images = np.unique(np.concatenate([raters[i].image_index for i in chosen]))
    if image_share < 1.0:
        pick = numpy_rng(seed, "validation-images").choice(len(images), size=max(1, int(round(image_share * len(images)))), replace=False)
        images = np.sort(images[pick])
    validation, train, dropped, skipped = [], [], 0, 0
    for i in chosen:  # validation raters in the seeded order
        r = raters[i]
        keep = np.isin(r.image_index, images)
        dropped += int((~keep).sum())
        if keep.sum() >= min_ratings:
            validation.append(_subset(r, keep))
        else:
            dropped, skipped = dropped + int(keep.sum()), skipped + 1
    for i in order:
        if in_val[i]:
            continue
        r = raters[int(i)]
        keep = ~np.isin(r.image_index, images)
        dropped += int((~keep).sum())
        if keep.sum() >= 2:
            train.append(_subset(r, keep))
        else:
            dropped, skipped = dropped + int(keep.sum()), skipped + 1
    if not validation or len(train) < 1:
        raise ConfigError(f"image-disjoint validation left {len(validation)} validation and {len(train)} training raters "
                          f"of {len(raters)} (val_fraction={val_fraction}, val_image_share={image_share}); lower val_fraction or raise val_image_share")
    return ValidationSplit("image-disjoint", train, validation, images.astype(np.int64), dropped, skipped)


def validation_split(raters: list[Rater], kind: str, val_fraction: float, seed: int, *, min_ratings: int, image_share: float = 1.0) -> ValidationSplit:
    """The split named `kind` (one of SPLITS)."""
    if kind == "raters":
        return rater_split(raters, val_fraction, seed)
    if kind == "image-disjoint":
        return image_disjoint_split(raters, val_fraction, seed, min_ratings=min_ratings, image_share=image_share)
    raise ConfigError(f"val_split must be one of {', '.join(SPLITS)}, got {kind!r}")
