"""What Tune sees of a trial, without torch: metric names, the stopper, and the checkpoint policy.

The sweep driver imports this rather than train.py, so it never loads torch (seconds of start-up
on a small machine); only the trial processes do.
"""

from __future__ import annotations

import time

from ray import tune

METRIC, MODE = "val/macro_f1", "max"  # what "best" means everywhere: checkpoints, results, reports
# A trial's Tune config is {"experiment": <resolved config dict>}: one grid over whole experiments
# puts every config of a sweep into one Tuner, whatever keys each one changes.
EXPERIMENT_KEY = "experiment"
# Reported with every result; Tune keeps the checkpoint ranked highest and the latest one. The rank
# is the best epoch whose weights a checkpoint holds (its best.pt), less a half where it only
# refers to an earlier checkpoint's best.pt: so the one holding the current best weights is kept.
CHECKPOINT_RANK = "checkpoint_rank"
# True in the one result a restored trial reports when it had already finished and been published
# (a driver killed before Tune recorded its end): its last epoch again, not a new one
REPLAYED = "replayed"


def checkpoint_rank(best_epoch: int, *, holds_best_weights: bool) -> float:
    return best_epoch if holds_best_weights else best_epoch - 0.5


def checkpoint_config() -> tune.CheckpointConfig:
    # num_to_keep=1 with a score keeps the best-ranked checkpoint AND the latest one (Tune always
    # keeps it): the latest to continue from, and the one whose best.pt the latest refers to
    return tune.CheckpointConfig(
        num_to_keep=1, checkpoint_score_attribute=CHECKPOINT_RANK, checkpoint_score_order="max"
    )


class CheckpointCadence:
    """When a trial saves its whole training state: every `epochs` epochs and/or every `minutes`
    minutes since the last save, whichever comes first (other.checkpoint_epochs / _minutes)."""

    def __init__(self, epochs: int | None, minutes: float | None, *, clock=time.monotonic):
        self.epochs, self.minutes, self.clock = epochs, minutes, clock
        self.last_epoch, self.last_time = 0, clock()

    def due(self, epoch: int) -> bool:
        by_epochs = self.epochs is not None and epoch - self.last_epoch >= self.epochs
        by_time = self.minutes is not None and self.clock() - self.last_time >= self.minutes * 60
        return by_epochs or by_time

    def saved(self, epoch: int) -> None:
        """The state as of `epoch` is in a checkpoint (just written, or restored from)."""
        self.last_epoch, self.last_time = epoch, self.clock()


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
