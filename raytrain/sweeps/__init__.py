"""What runs in the sweep's driver: the plan (`plan`, no ray), the settings `resume` rebuilds from
(`settings`), connecting to Ray and building or restoring the one Tuner (`driver`), the Tune callback
that publishes each finished trial into runs/ (`publisher`), the outcome (`outcome`), adaptive
searchers, storage, the status line (`progress`), Ray Jobs (`jobs`) and the stopper (`policy`).

Imports ray, never torch (`make lint` checks): the driver starts in seconds; trials load torch.
This file imports nothing, so `raytrain validate` and the plan table need no Ray.
"""
