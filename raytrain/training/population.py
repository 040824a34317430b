"""A population member's part of the trainable (search.algorithm: pbt or pb2).

PBT changes a member's knobs only by stopping it and starting it again from a checkpoint, its own
or a stronger member's (an exploit), with the new values in its config. So a member needs, beyond
what every trial does: a checkpoint at every perturbation epoch (the one the scheduler copies),
each holding its own best.pt (the scheduler may copy it after the member has moved on, so it
cannot refer to another folder); the config's knobs to win over the optimiser state it restores
(config/population.py says what each change means); and its epochs recorded with the knob values
in force (raytrain/lineage.py).
"""

from __future__ import annotations

import posixpath
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from raytrain import lineage
from raytrain.naming import EXPERIMENT_KEY
from raytrain.training.checkpoints import CHECKPOINT_PREFIX, Location

# what the optimiser's param groups take from the config rather than from the checkpoint: the
# decay, and OneCycle's three anchors (start, peak and end of the schedule; optim.build_scheduler).
# Momentum (Adam's beta1) is cycled by the schedule's position, which the checkpoint holds.
CONFIG_GROUP_KEYS = ("weight_decay", "initial_lr", "max_lr", "min_lr")


class Member:
    """One member of a population, as its trial sees it: `spec` is the trial config's
    lineage.POPULATION_KEY entry, `experiment` its resolved config."""

    def __init__(self, spec: dict, experiment: dict, trial_id: str):
        self.knobs = list(spec["knobs"])
        self.interval = int(spec["perturbation_interval"])
        self.experiment = experiment
        self.trial_id = trial_id

    @classmethod
    def of(cls, config: dict, trial_id: str) -> Member | None:
        """The member a trial config makes, or None for a trial of anything but pbt/pb2."""
        spec = config.get(lineage.POPULATION_KEY)
        return cls(spec, config[EXPERIMENT_KEY], trial_id) if spec else None

    def perturbs_at(self, epoch: int) -> bool:
        """The scheduler decides at these epochs, so the member saves a checkpoint there."""
        return epoch % self.interval == 0

    def rank(self, epoch: int) -> float:
        """A member's checkpoints all hold their own best.pt; Tune keeps the two ranked highest and
        the latest (driver.population_checkpoint_config). Perturbation checkpoints rank above the
        others, and on equal ranks the later one is kept (docs/ray-notes.md): so the two latest
        perturbation checkpoints, which the scheduler may still hand to a member that copies this one."""
        return 1.0 if self.perturbs_at(epoch) else 0.0

    def epoch_record(self) -> dict:
        return lineage.epoch_record(self.experiment, self.knobs)

    def config_at(self, history: list[dict], epoch: int) -> dict:
        return lineage.config_at(self.experiment, history, epoch)

    def copies(self, checkpoint) -> bool:
        """Whether `checkpoint` is another member's (an exploit): Tune names every trial folder
        `<name>_<trial id>` (sweeps/driver.trial_dirname)."""
        folder = posixpath.basename(posixpath.dirname(Location.of(checkpoint).path))
        return not folder.endswith(f"_{self.trial_id}")


def number_checkpoints_past_existing() -> None:
    """Make this trial's next checkpoint folder a new one, numbered past every `checkpoint_*` in its
    folder on the storage.

    Tune numbers a trial's checkpoint folders from a counter that its driver advances only for the
    checkpoints it registers, and hands the trial at each start. PBT stops members at decisions
    without registering the checkpoint they reported there (the one copied instead, or the one a
    pause saved later), so a member restarted there wrote its next checkpoints into a folder of the
    same number as one registered before: two registered checkpoints on one folder, and Tune's
    retention deleting the older deleted the newer, a member's last one included (docs/ray-notes.md).
    Reaches into Ray's session (the trial's StorageContext), checked on ray 2.60."""
    import pyarrow.fs as pafs
    from ray.train._internal.session import get_session

    session = get_session()
    storage = getattr(session, "storage", None)
    if storage is None:
        return
    selector = pafs.FileSelector(storage.trial_fs_path, allow_not_found=True)
    numbers = [
        int(name[len(CHECKPOINT_PREFIX) :])
        for info in storage.storage_filesystem.get_file_info(selector)
        if info.type == pafs.FileType.Directory
        and (name := posixpath.basename(info.path)).startswith(CHECKPOINT_PREFIX)
        and name[len(CHECKPOINT_PREFIX) :].isdigit()
    ]
    if numbers:
        storage.current_checkpoint_index = max(storage.current_checkpoint_index, max(numbers))


@contextmanager
def config_knobs_win(optimizer: Optimizer, scheduler: LRScheduler) -> Iterator[None]:
    """Around loading the optimiser's and the schedule's state from a checkpoint: the config's
    decay and learning rate stay in force. A new training.lr replaces the peak of the one-cycle
    schedule (and its start and end, at the same ratios), so from the next step the schedule goes
    on from where the checkpoint was, scaled to the new peak; the lr of that very step too."""
    given = [{key: group[key] for key in CONFIG_GROUP_KEYS if key in group} for group in optimizer.param_groups]
    yield
    for group, values in zip(optimizer.param_groups, given):
        group.update(values)
    if scheduler.last_epoch < getattr(scheduler, "total_steps", scheduler.last_epoch + 1):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # get_lr outside step() warns: here it is what step() would set
            rates = scheduler.get_lr()
        for group, rate in zip(optimizer.param_groups, rates):
            group["lr"] = rate
        scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]
