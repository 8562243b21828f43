"""Zero-shot taste from Big-Five: the link between a rater's personality and what they like.

PA-IAA's personality head maps an image to p(x), "the Big-Five of people who like it". To turn a new
rater's own Big-Five b into a taste vector w (so that s_user = s_generic + w · p), we learn from the
personality raters which images they liked out of the pool they could have liked:

    logit P(rater u likes x) = c_u + a · s_generic(x) + p(x)ᵀ M b_u

a conditional-logit (likes vs. not-liked) model with a per-rater intercept c_u, one generic-score
coefficient a shared by everyone, and a 5×5 matrix M that says how each trait of the rater shifts
their preference along each personality direction of the image. Liking trades the generic score off
against personal fit, so dividing by a puts the personal term on the generic score's scale:

    w(b) = M b / a        (score points per unit of p)

which is exactly the weight the fusion formula needs, with no rated images from the new rater.

Where the training raters' own Big-Five is known (PARA), the link is learned from their ratings
instead (`fit_taste_link_from_ratings`): each rater's taste w_u is fitted from what they rated, and
M is the ridge regression of w_u on their Big-Five (around the raters' mean Big-Five). Ratings on the
task itself are more direct evidence than likes, so this is preferred when it is available.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from piaa.seeding import numpy_rng


@dataclass(frozen=True)
class TasteLink:
    matrix: np.ndarray  # M [5, 5]: image personality direction × rater trait
    generic_coef: float  # a, per score point
    n_raters: int
    center: np.ndarray | None = None  # Big-Five the link is centred on (None: the origin)

    def weights(self, big_five: np.ndarray) -> np.ndarray:
        """w(b) = M (b - center) / a for one Big-Five vector [5] or a batch [n, 5]."""
        b = np.asarray(big_five, dtype=np.float64)
        if self.center is not None:
            b = b - self.center
        return (b @ self.matrix.T) / self.generic_coef


def rater_tastes(raters, *, min_ratings: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares taste θ_u = (γ, w) of each rater from (design [n, 6], scores [n]) pairs, on the
    centred support as in the fusion model. Returns (θ [U, 6], kept mask [len(raters)]): raters with
    too few ratings or a singular design are left out."""
    thetas, kept = [], []
    for x, y in raters:
        n, d = x.shape
        ok = n >= max(min_ratings, d + 3)
        if ok:
            xc = x - x.mean(axis=0)
            gram = xc.T @ xc
            ok = np.linalg.cond(gram) < 1e10
        if ok:
            thetas.append(np.linalg.solve(gram, xc.T @ (np.asarray(y, dtype=np.float64) - float(np.mean(y)))))
        kept.append(ok)
    return np.asarray(thetas).reshape(-1, 6), np.asarray(kept, dtype=bool)


def fit_taste_link_from_ratings(raters, big_five: np.ndarray, *, l2: float = 0.05) -> TasteLink:
    """The link learned from training raters' own ratings, pooled over all of them.

    `raters` holds each rater's (design [n, 6] = [s_generic, p], scores [n]); `big_five` [U, 5] their
    traits. Within each rater (scores and design centred on the rater's means) the model is

        y - ȳ_u = γ (s - s̄_u) + ((p - p̄_u) ⊗ (b_u - b̄)) · vec(M) + noise

    one least-squares fit of γ and the 25 entries of M over every rating, ridge `l2` on M (relative to
    the scale of its columns). Pooling uses every rating at once, so raters with few ratings still
    count, unlike a regression of per-rater fits.
    """
    b = np.asarray(big_five, dtype=np.float64)
    center = b.mean(axis=0)
    rows, targets = [], []
    for (x, y), bu in zip(raters, b):
        x = np.asarray(x, dtype=np.float64)
        if len(x) < 2:
            continue
        xc = x - x.mean(axis=0)
        pc = xc[:, 1:]
        rows.append(np.column_stack([xc[:, :1], (pc[:, :, None] * (bu - center)[None, None, :]).reshape(len(x), 25)]))
        targets.append(np.asarray(y, dtype=np.float64) - float(np.mean(y)))
    if len(rows) < 2:
        raise ValueError(f"need at least 2 raters with 2+ ratings to learn the link from ratings, got {len(rows)}")
    a = np.concatenate(rows)
    t = np.concatenate(targets)
    gram = a.T @ a
    scale = np.diag(gram)[1:].mean()
    penalty = np.zeros(26)
    penalty[1:] = l2 * max(scale, 1e-12)
    coef = np.linalg.solve(gram + np.diag(penalty), a.T @ t)
    matrix = coef[1:].reshape(5, 5)  # [personality direction, trait]
    return TasteLink(matrix=matrix, generic_coef=1.0, n_raters=int(len(rows)), center=center)


def fit_taste_link(
    generic_score: np.ndarray,
    personality: np.ndarray,
    liked: np.ndarray,
    big_five: np.ndarray,
    *,
    l2: float = 1e-5,
    max_iter: int = 200,
) -> TasteLink:
    """Fit the conditional-logit link by L-BFGS with exact gradients (deterministic, no RNG).

    generic_score [N] and personality [N, 5] describe the pool of images; liked [U, N] is a 0/1 matrix of
    which pool images each personality rater liked; big_five [U, 5] their traits. `l2` shrinks M.
    """
    g = np.asarray(generic_score, dtype=np.float64)
    g_mean, g_std = float(g.mean()), max(float(g.std()), 1e-9)
    gz = (g - g_mean) / g_std
    p = np.asarray(personality, dtype=np.float64)
    p = p - p.mean(axis=0)
    y = np.asarray(liked, dtype=np.float64)  # [U, N]
    b = np.asarray(big_five, dtype=np.float64)  # [U, 5]
    n_raters, n_pool = y.shape
    rate = np.clip(y.mean(axis=1), 1e-6, 1 - 1e-6)
    penalty = l2 * n_pool / 5.0

    def unpack(v: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
        return v[:n_raters], float(v[n_raters]), v[n_raters + 1 :].reshape(5, 5)

    def loss_and_grad(v: np.ndarray) -> tuple[float, np.ndarray]:
        c, a, m = unpack(v)
        logits = c[:, None] + a * gz[None, :] + (b @ m.T) @ p.T
        loss = float(np.sum(np.logaddexp(0.0, logits) - y * logits)) / n_raters + penalty * float(np.sum(m**2))
        r = (_sigmoid(logits) - y) / n_raters
        grad_m = (p.T @ r.T) @ b + 2.0 * penalty * m
        return loss, np.concatenate([r.sum(axis=1), [float(r.sum(axis=0) @ gz)], grad_m.ravel()])

    start = np.concatenate([np.log(rate / (1 - rate)), [0.0], np.zeros(25)])
    from scipy.optimize import minimize  # imported when fitting: slow to import, not needed to score

    result = minimize(loss_and_grad, start, jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
    _, a, m = unpack(result.x)
    coef = max(a, 1e-6) / g_std  # per score point; liking must rise with the generic score
    return TasteLink(matrix=m.copy(), generic_coef=coef, n_raters=int(n_raters))


def liked_auc(generic_score: np.ndarray, personality: np.ndarray, liked: np.ndarray, weights: np.ndarray) -> float:
    """Mean over raters of the AUC of their liked images against the pool, ranked by s_generic + w_u · p.

    This is how zero-shot personalisation ranks images, so it scores a link for the job it will do.
    """
    aucs = []
    for row, w in zip(liked, weights):
        score = generic_score + personality @ w
        pos = row > 0
        n_pos, n_neg = int(pos.sum()), int((~pos).sum())
        if n_pos == 0 or n_neg == 0:
            continue
        ranks = np.argsort(np.argsort(score)) + 1.0
        aucs.append((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
    return float(np.mean(aucs)) if aucs else float("nan")


def select_link_l2(
    generic_score: np.ndarray,
    personality: np.ndarray,
    liked: np.ndarray,
    big_five: np.ndarray,
    grid: tuple[float, ...],
    *,
    folds: int = 5,
    seed: int = 0,
) -> tuple[float, list[dict[str, float]]]:
    """Choose the link's shrinkage by cross-validation over personality raters (never test raters).

    Each fold's raters are held out, the link is fitted on the others, and the held-out raters' liked
    images are ranked with their own Big-Five only (liked_auc). Returns the best l2 and the CV table.
    """
    n = len(liked)
    if len(grid) == 1 or n < 2 * folds:
        return float(grid[0]), []
    order = numpy_rng(seed, "pa-iaa", "link-cv").permutation(n)
    fold_of = np.empty(n, dtype=int)
    fold_of[order] = np.arange(n) % folds
    table = []
    for l2 in grid:
        scores = []
        for f in range(folds):
            train, held = fold_of != f, fold_of == f
            link = fit_taste_link(generic_score, personality, liked[train], big_five[train], l2=l2)
            scores.append(liked_auc(generic_score, personality - personality.mean(axis=0), liked[held], link.weights(big_five[held])))
        table.append({"l2": float(l2), "cv_auc": float(np.mean(scores))})
    best = max(table, key=lambda row: row["cv_auc"])
    return best["l2"], table


def _sigmoid(z: np.ndarray) -> np.ndarray:
    """The logistic function, numerically stable both ways (scipy.special.expit costs ~0.3 s to
    import, a third of a cold `piaa adapt` beyond torch)."""
    z = np.asarray(z, dtype=np.float64)
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out
