"""MLflow: each trial an MLflow run in an experiment named after the sweep, written with MLflow's client.

Not Ray's MLflowLoggerCallback: it starts a second run when a resumed trial starts again, logs the
last epoch as the run's summary, and a server error in it would end the sweep. Here the run is
found again by its tags, the best epoch's metrics are logged as best/val/* and test/* (what
raytrain ranks by), and every call is guarded by Tracker._safely.
"""

from __future__ import annotations

import os
import time

from raytrain import artifacts
from raytrain.naming import EXPERIMENT_KEY, FAILED, dotted, first_line
from raytrain.trackers import (
    Finished,
    Tracker,
    TrackerError,
    epoch_metrics,
    missing_package,
    summary_metrics,
)

SWEEP_TAG, EXPERIMENT_TAG, STATUS_TAG, ERROR_TAG = (
    "raytrain.sweeps.driver",
    "raytrain.experiment",
    "raytrain.status",
    "raytrain.error",
)
STEP_METRIC = "val/macro_f1"  # reported every epoch: its last step is the last epoch a run holds
MAX_PARAMS_PER_CALL = 100  # MLflow's limit for one log_batch
MAX_PARAM_CHARS = 6000  # MLflow's limit for one param's value
# a server that is down answers in seconds, not after MLflow's default 7 retries over minutes, so
# the driver (which also schedules the trials) is never held up for long; set them to override
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "15"}
# MLflow prints two lines with a link when a run ends; raytrain prints the experiment's link once instead
QUIET = {"MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}


def _client(uri: str):
    for key, value in (HTTP_DEFAULTS | QUIET).items():
        os.environ.setdefault(key, value)
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def check_mlflow(uri: str) -> None:
    try:
        import mlflow  # noqa: F401
    except ImportError as err:
        raise missing_package("--mlflow", "mlflow", err) from None
    try:
        _client(uri).search_experiments(max_results=1)
    except Exception as err:  # refused, a timeout, an HTTP error, a bad URI: each means "not usable"
        raise TrackerError(
            f"--mlflow {uri}: the MLflow tracking server does not answer ({first_line(err, typed=True)}); start it "
            "(`mlflow server --host 127.0.0.1 --port 5000`) or fix the URI. Nothing was trained"
        ) from None


class MLflowTracker(Tracker):
    name = "MLflow"

    def __init__(self, sweep: str, uri: str):
        super().__init__(sweep)
        self.uri = uri
        self.client = None
        self.experiment_id: str | None = None
        self.runs: dict[str, str] = {}  # trial id -> MLflow run id
        self.last_step: dict[str, int] = {}  # trial id -> last epoch the run holds

    def settings(self) -> dict:
        return {"uri": self.uri}

    def open(self) -> None:
        self.client = _client(self.uri)
        experiment = self.client.get_experiment_by_name(self.sweep)
        self.experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(self.sweep)
        print(
            f"MLflow: each trial is a run in experiment {self.sweep} (id {self.experiment_id}) at {self.uri}",
            flush=True,
        )

    def start(self, trial) -> None:
        """A resumed or retried trial continues its run; a new one gets a run with its config as params."""
        if trial.trial_id in self.runs:
            return
        experiment = trial.config[EXPERIMENT_KEY]
        name = experiment["name"]
        quoted = name.replace("'", "\\'")
        existing = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{EXPERIMENT_TAG}` = '{quoted}'",
            max_results=1,
        )
        if existing:
            run_id = existing[0].info.run_id
            history = self.client.get_metric_history(run_id, STEP_METRIC)
            self.last_step[trial.trial_id] = max((m.step for m in history), default=0)
            self.client.update_run(run_id, status="RUNNING")
        else:
            from mlflow.entities import Param

            run_id = self.client.create_run(
                self.experiment_id,
                run_name=name,
                tags={SWEEP_TAG: self.sweep, EXPERIMENT_TAG: name},
            ).info.run_id
            params = [Param(key, str(value)[:MAX_PARAM_CHARS]) for key, value in dotted(experiment).items()]
            for i in range(0, len(params), MAX_PARAMS_PER_CALL):
                self.client.log_batch(run_id, params=params[i : i + MAX_PARAMS_PER_CALL])
            self.last_step[trial.trial_id] = 0
        self.runs[trial.trial_id] = run_id

    def log_epoch(self, trial, result: dict) -> None:
        self.start(trial)
        epoch = int(result["epoch"])
        if epoch <= self.last_step[trial.trial_id]:  # logged before the interruption; the rerun reports it again
            return
        self._log_metrics(self.runs[trial.trial_id], epoch_metrics(result), step=epoch)
        self.last_step[trial.trial_id] = epoch

    def finish(self, trial, end: Finished) -> None:
        self.start(trial)
        run_id = self.runs[trial.trial_id]
        if end.files is not None:
            # epochs this run missed (the tracker was added on resume, or a report was lost) from runs/
            for record in end.files.history:
                if record["epoch"] > self.last_step[trial.trial_id]:
                    self._log_metrics(run_id, epoch_metrics(record), step=int(record["epoch"]))
            self.last_step[trial.trial_id] = max(
                [self.last_step[trial.trial_id], *(r["epoch"] for r in end.files.history)]
            )
            self._log_metrics(run_id, summary_metrics(end.files), step=int(end.files.best["epoch"]))
            for artifact in (
                artifacts.BEST_WEIGHTS,
                artifacts.CONFIG,
                artifacts.BEST_CONFUSION,
                artifacts.TEST_CONFUSION,
            ):
                if (end.folder / artifact).is_file():
                    self.client.log_artifact(run_id, str(end.folder / artifact))
        self.client.set_tag(run_id, STATUS_TAG, end.status)
        if end.error:
            self.client.set_tag(run_id, ERROR_TAG, end.error[:5000])
        self.client.set_terminated(run_id, "FAILED" if end.status == FAILED else "FINISHED")

    def _log_metrics(self, run_id: str, metrics: dict[str, float], *, step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(run_id, metrics=[Metric(key, value, now, step) for key, value in metrics.items()])
