"""Bi-level meta-learning (BLG-PIAA and the MAML family) written with torch.func.

`inner` holds the differentiable inner-loop optimisers, `outer` the meta-gradients and the
meta-optimiser, `loop` the meta-training loop with validation and checkpoints, `methods` the
registered presets (`blg-piaa`, `maml`, `fomaml`, `reptile`, `meta-sgd`).
"""
