"""What Tune does with a trial's results, in the driver: the stopper, the checkpoint policy, and
whether a finished trial was cut short by the scheduler. Imports ray, never torch.
"""

from __future__ import annotations

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
