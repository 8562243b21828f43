"""A human-readable summary of a rater dataset (what `piaa data describe` prints)."""

from __future__ import annotations

from typing import Any

import numpy as np

from piaa.tasks.format import BIG_FIVE, SPLITS, RaterDataset


def describe(data: RaterDataset) -> dict[str, Any]:
    """Key facts as ordered (label, value) rows plus a machine-readable dict."""
    per_rater = data.ratings.groupby("user").size()
    splits = {s: int((data.users["split"] == s).sum()) for s in SPLITS}
    scores = data.ratings["score"].to_numpy()
    lo, hi = data.score_range
    if np.allclose(scores, np.round(scores)) and hi - lo <= 20:
        values, counts = np.unique(scores, return_counts=True)
        hist = {f"{v:g}": int(c) for v, c in zip(values, counts)}
    else:
        counts, edges = np.histogram(scores, bins=5, range=(lo, hi))
        hist = {f"{a:.2f}-{b:.2f}": int(c) for a, b, c in zip(edges[:-1], edges[1:], counts)}
    known_b5 = data.users[list(BIG_FIVE)].notna().all(axis=1)
    b5 = {s: int((known_b5 & (data.users["split"] == s)).sum()) for s in SPLITS}
    facts = {
        "name": data.name,
        "raters": splits,
        "images": len(data.images),
        "ratings": len(data.ratings),
        "ratings_per_rater": {"min": int(per_rater.min()), "median": float(per_rater.median()), "max": int(per_rater.max())} if len(per_rater) else None,
        "score_range": list(data.score_range),
        "score_histogram": hist,
        "feature_dim": data.feature_dim,
        "feature_dtype": str(data.features.dtype),
        "big_five_known": b5,
        "likes": 0 if data.likes is None else len(data.likes),
    }
    rpr = facts["ratings_per_rater"]
    rows = [
        ("raters", ", ".join(f"{n} {s}" for s, n in splits.items())),
        ("images", f"{facts['images']:,}"),
        ("ratings", f"{facts['ratings']:,}"),
        ("ratings per rater", f"min {rpr['min']}, median {rpr['median']:g}, max {rpr['max']}" if rpr else "none"),
        ("score range", f"{lo:g} to {hi:g}"),
        ("score histogram", "  ".join(f"{k}: {v:,}" for k, v in hist.items())),
        ("features", f"{facts['feature_dim']} dims, {facts['feature_dtype']}"),
        ("Big-Five known", ", ".join(f"{n} {s}" for s, n in b5.items() if splits[s]) or "none"),
        ("likes", f"{facts['likes']:,} (personality raters)" if facts["likes"] else "none"),
    ]
    if data.rater_attribute_names:
        rows.append(("rater attributes", ", ".join(data.rater_attribute_names)))
    if data.attribute_names:
        rows.append(("attributes (extra targets)", f"{len(data.attributes):,} rows: {', '.join(data.attribute_names)}"))
    facts["rater_attributes"] = data.rater_attribute_names
    facts["attributes"] = data.attribute_names
    image_split = data.image_split()
    if image_split is not None:
        counts = image_split.value_counts()
        rows.append(("image split (GIAA)", f"{int(counts.get('train', 0)):,} train, {int(counts.get('test', 0)):,} test images (giaa_split.csv)"))
    facts["image_split"] = None if image_split is None else {s: int((image_split == s).sum()) for s in ("train", "test")}
    truth = data.meta.get("ground_truth")
    if truth:
        rows.append(("ground truth (simulated)", ", ".join(f"{k} {v:.3f}" for k, v in truth.items())))
    facts["rows"] = rows
    return facts
