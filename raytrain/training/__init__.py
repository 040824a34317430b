"""What runs inside a trial: the trainable (`trainable`), the plain-torch loop (`loop`), models,
losses, optimisers, metrics, numerics, batch augmentation on the device (`augment`), checkpoints,
best.pt (`best_weights`) and `predict` with it.

Imports torch; `loop` imports no ray. This file imports nothing, so the driver can use
`training.checkpoints` (pyarrow only) without loading torch (`make lint` checks both).
"""
