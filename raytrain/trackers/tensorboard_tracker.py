"""TensorBoard: one run per experiment, RUNS/_tune/<sweep>/<experiment>/, under raytrain's own tags.

`tensorboard --logdir runs/_tune` then lists `<sweep>/<experiment>` runs with val/macro_f1,
val/f1/<class>, train/loss, lr, ... per epoch, and HParams whose metrics are the best epoch's
(best/val/*) and test's. Written with tensorboardX, which ray[tune] brings; viewing needs the
`tensorboard` package (`pip install 'raytrain[tb]'`).
"""

from __future__ import annotations

from pathlib import Path

from ray.tune.logger import TBXLoggerCallback

from raytrain import artifacts
from raytrain.naming import EXPERIMENT_KEY, dotted
from raytrain.trackers import Finished, Tracker, epoch_metrics, summary_metrics

HPARAM_METRICS = (
    "best/val/macro_f1",
    "best/val/accuracy",
    "best/val/loss",
    "test/macro_f1",
    "test/accuracy",
    "test/loss",
)


# A TBXLoggerCallback only so that Tune leaves out its own, which would write the same numbers again
# as ray/tune/* under the trial folders' names (<name>_<trial id>), with the last epoch as HParams.
class TensorBoardTracker(Tracker, TBXLoggerCallback):
    name = "TensorBoard"

    def __init__(self, sweep: str):
        Tracker.__init__(self, sweep)
        self.writers: dict[str, object] = {}  # trial id -> SummaryWriter

    def folder(self, trial) -> Path:
        return artifacts.within(
            Path(self.runs_dir) / artifacts.TUNE_DIR, f"{self.sweep}/{trial.config[EXPERIMENT_KEY]['name']}"
        )

    def _writer(self, trial, purge_step: int | None = None):
        if trial.trial_id not in self.writers:
            from tensorboardX import SummaryWriter

            # purge_step: a resumed trial reports its epochs again from its checkpoint on; TensorBoard
            # drops what the interrupted run wrote from that step on, so no epoch is shown twice
            self.writers[trial.trial_id] = SummaryWriter(str(self.folder(trial)), purge_step=purge_step, flush_secs=30)
        return self.writers[trial.trial_id]

    def log_epoch(self, trial, result: dict) -> None:
        epoch = int(result["epoch"])
        writer = self._writer(trial, purge_step=epoch)
        for tag, value in epoch_metrics(result).items():
            writer.add_scalar(tag, value, global_step=epoch)
        writer.flush()

    def finish(self, trial, end: Finished) -> None:
        writer = self._writer(trial)
        if end.files is not None:
            from tensorboardX.summary import hparams

            step = int(end.files.best["epoch"])
            summary = summary_metrics(end.files)
            for tag, value in summary.items():
                writer.add_scalar(tag, value, global_step=step)
            # HParams shows each metric tag's last value in the run: the ones just written
            hparam_values = {k: _hparam_value(v) for k, v in dotted(end.files.config).items()}
            for part in hparams(hparam_values, {k: summary[k] for k in HPARAM_METRICS if k in summary}):
                writer.file_writer.add_summary(part)
        writer.close()
        del self.writers[trial.trial_id]

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
        self.writers.clear()


def _hparam_value(value):
    # HParams takes numbers, strings and booleans; a list (augmentation ops) or None is shown as text
    return value if isinstance(value, (bool, int, float, str)) else str(value)
