"""Repairs Tune's record of a trial's checkpoint on restore, where a driver killed at the wrong
moment left it naming a checkpoint already deleted. Reaches into Tune's private trial state
(checkpoint_manager, storage): docs/ray-notes.md says which Ray version this was checked on.
"""

from __future__ import annotations

from pathlib import Path

from ray import tune

from raytrain.naming import EXPERIMENT_KEY
from raytrain.sweeps import storage as tune_storage


class LostCheckpointRepair(tune.Callback):
    """On restore, points a trial whose recorded checkpoint is gone at the checkpoint that replaced it.

    When a trial reports checkpoint N, the driver deletes checkpoint N-1 (num_to_keep) at once but
    uploads the experiment state that names N only later, in the background. A driver killed in
    between (SIGKILL, a lost head node) leaves a state naming the deleted N-1, and Tune would fail
    the trial on every retry ("Could not recover from checkpoint as it does not exist on storage
    anymore"); with a bucket the gap is long enough to hit (docs/ray-notes.md). Checkpoint N is
    whole: the trial uploads it before reporting it. Pickled with the Tuner, so it runs on restore."""

    def setup(self, **info):
        self._checked = False

    def on_step_begin(self, iteration, trials, **info):
        # the first step of a fit, before any trial's actor starts and restores
        if getattr(self, "_checked", True):
            return
        self._checked = True
        for trial in trials:
            if trial.status != "TERMINATED":
                _repoint_lost_checkpoint(trial)


def _repoint_lost_checkpoint(trial) -> None:
    import pyarrow.fs

    result = trial.run_metadata.checkpoint_manager.latest_checkpoint_result
    if result is None:
        return
    filesystem, lost = result.checkpoint.filesystem, result.checkpoint.path
    if filesystem.get_file_info(lost).type != pyarrow.fs.FileType.NotFound:
        return
    own = trial.storage.trial_fs_path
    copying = Path(lost).parent != Path(own)
    if copying:
        # another population member's checkpoint, which this member was about to copy (pbt) and
        # which that member's newer ones replaced since: it goes on from its own newest instead
        replacement = tune_storage.newest_checkpoint(filesystem, own)
    else:
        replacement = tune_storage.next_checkpoint(filesystem, own, after=lost)
    if replacement is None:
        return  # nothing to continue from: Tune fails the trial with its own message, naming the path
    result.checkpoint = type(result.checkpoint)(path=replacement, filesystem=filesystem)
    # the next checkpoint gets the number after the replacement's, not the lost one's: Tune would
    # write it over the folder it continues from, then delete that folder as an old checkpoint
    trial.storage.current_checkpoint_index = tune_storage.checkpoint_index(replacement)
    name = trial.config[EXPERIMENT_KEY]["name"]
    if copying:
        print(
            f"[{name}] the checkpoint it was to copy ({lost}) is gone since the sweep stopped; it goes on from its "
            f"own {Path(replacement).name}, with the knob values it was given",
            flush=True,
        )
        return
    print(
        f"[{name}] its last recorded checkpoint {Path(lost).name} was replaced just "
        f"before the sweep stopped; continuing from {Path(replacement).name}",
        flush=True,
    )
