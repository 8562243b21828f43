"""Probabilistic priors over raters: rater heads on a shared design, adapted in closed form.

`gaussian` (empirical-Bayes Gaussian prior over heads and its posterior), `design` (the rows the heads
act on), `validation` (choosing hyperparameters on held-out training raters), `learned_prior` and
`task_vector` (the registered methods), `structure_limit` (the best the demo's structure allows).
"""
