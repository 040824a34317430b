"""What Tune does with a trial's results, in the driver: the stopper, the checkpoint policy, and
whether a finished trial was cut short by the scheduler. Imports ray, never torch.
"""

from __future__ import annotations

import math

from ray import tune

from raytrain.naming import CHECKPOINT_RANK, EXPERIMENT_KEY


def checkpoint_config() -> tune.CheckpointConfig:
    # num_to_keep=1 with a score keeps the best-ranked checkpoint AND the latest one (Tune always
    # keeps it): the latest to continue from, and the one whose best.pt the latest refers to
    return tune.CheckpointConfig(
        num_to_keep=1, checkpoint_score_attribute=CHECKPOINT_RANK, checkpoint_score_order="max"
    )


class PatienceStopper(tune.Stopper):
    """Stops a trial once `epochs_since_best` reaches that trial's own other.patience.

    A pure function of the result: the counter lives in the trainable and its checkpoint, so a
    restored sweep stops exactly where an uninterrupted one would (docs/ray-notes.md).
    """

    def __call__(self, trial_id: str, result: dict) -> bool:
        return result["epochs_since_best"] >= result["config"][EXPERIMENT_KEY]["other"]["patience"]

    def stop_all(self) -> bool:
        return False


def stopped_by_scheduler(experiment: dict, last_result: dict) -> bool:
    """Whether a finished trial was cut short by the scheduler (ASHA): the trainable ends on its own
    only at training.epochs or when patience runs out, so a trial that ended before both was stopped
    from outside. Such a trial is `pruned`; its last checkpoint is not final, so test is not evaluated."""
    epoch = last_result.get("epoch")
    if epoch is None:
        return False
    return (
        epoch < experiment["training"]["epochs"] and last_result["epochs_since_best"] < experiment["other"]["patience"]
    )


def scheduler_decision_epochs(scheduler: dict | None, max_epochs: int) -> tuple[int, ...]:
    """The epochs at which the sweep's scheduler may stop a trial: ASHA's rungs, the epochs where
    Tune's _Bracket compares a trial with the others (grace_period * reduction_factor ** k below
    max_t, acted on at the first result at or past each). A trial checkpoints at each, so one that
    is stopped there ends on a checkpoint of its last epoch, whatever its time-based cadence
    (training.checkpoints.CheckpointCadence); otherwise it would be published as of an older one.
    Results come once per epoch, so an epoch is a training_iteration, ASHA's time unit here."""
    if not scheduler or scheduler.get("type") != "asha":
        return ()
    grace, factor = scheduler["grace_period"], scheduler["reduction_factor"]
    if max_epochs < grace:
        return ()
    # Tune's own count of rungs (ray/tune/schedulers/async_hyperband.py, _Bracket.__init__)
    rungs = int(math.log(max_epochs / grace) / math.log(factor) + 1)
    return tuple(sorted({math.ceil(grace * factor**k) for k in range(rungs)}))
