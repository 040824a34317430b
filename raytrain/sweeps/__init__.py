"""What runs in the sweep's driver: the plan (`plan`, no ray), the settings `resume` rebuilds from
(`settings`), connecting to Ray and building or restoring the one Tuner (`driver`), the Tune callback
that publishes each finished trial into runs/ (`publisher`), what the sweep came to (`outcome`,
with a failure's one line in `failures` and Tune's record read in `tune_state`), the checkpoint
repair on restore (`repair`), adaptive searchers, storage, the epoch and status lines (`progress`),
Ray Jobs (`jobs`) and the stopper (`policy`).

Imports ray, never torch (`make lint` checks): the driver starts in seconds; trials load torch.
This file imports nothing, so `raytrain validate` and the plan table need no Ray.
"""
