"""PA-IAA: personality-assisted multi-task aesthetics (Li, Zhu et al., IEEE TIP 2020), with zero-shot
personalisation from a rater's Big-Five.

`model` (trunk + aesthetics and personality heads), `data` (what the two tasks train on), `losses`,
`training` (alternating batches), `link` (Big-Five → taste, learned from what personality raters
liked), `fusion` (s_user = s_generic + w · p and its Bayesian fit), `method` (the registered `pa-iaa`).
"""
