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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from piaa.seeding import torch_seeded


@dataclass(frozen=True)
class TasteLink:
    matrix: np.ndarray  # M [5, 5]: image personality direction × rater trait
    generic_coef: float  # a, per score point
    n_raters: int

    def weights(self, big_five: np.ndarray) -> np.ndarray:
        """w(b) = M b / a for one Big-Five vector [5] or a batch [n, 5]."""
        b = np.asarray(big_five, dtype=np.float64)
        return (b @ self.matrix.T) / self.generic_coef


def fit_taste_link(
    generic_score: np.ndarray,
    personality: np.ndarray,
    liked: np.ndarray,
    big_five: np.ndarray,
    *,
    l2: float = 1e-3,
    seed: int = 0,
    max_iter: int = 200,
) -> TasteLink:
    """Fit the conditional-logit link.

    generic_score [N] and personality [N, 5] describe the pool of images; liked [U, N] is a 0/1 matrix of
    which pool images each personality rater liked; big_five [U, 5] their traits. `l2` shrinks M.
    """
    g = np.asarray(generic_score, dtype=np.float64)
    g_mean, g_std = float(g.mean()), max(float(g.std()), 1e-9)
    gz = torch.as_tensor((g - g_mean) / g_std)
    p = torch.as_tensor(np.asarray(personality, dtype=np.float64))
    p = p - p.mean(dim=0)
    y = torch.as_tensor(np.asarray(liked, dtype=np.float64))  # [U, N]
    b = torch.as_tensor(np.asarray(big_five, dtype=np.float64))  # [U, 5]
    n_raters, n_pool = y.shape
    rate = y.mean(dim=1).clamp(1e-6, 1 - 1e-6)
    with torch_seeded(seed, "pa-iaa", "link"):
        c = torch.log(rate / (1 - rate)).clone().requires_grad_(True)
        a = torch.zeros(1, dtype=torch.float64, requires_grad=True)
        m = torch.zeros(5, 5, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([c, a, m], lr=1.0, max_iter=max_iter, tolerance_grad=1e-9, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad()
            logits = c[:, None] + a * gz[None, :] + b @ m.T @ p.T  # [U, N]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="sum") / n_raters
            loss = loss + l2 * n_pool * (m**2).sum() / 5.0
            loss.backward()
            return loss

        opt.step(closure)
    coef = float(a.detach()) / g_std  # per score point
    return TasteLink(matrix=m.detach().numpy().copy(), generic_coef=coef, n_raters=int(n_raters))
