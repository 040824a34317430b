"""A sweep's status at a glance: trials running / done / pending / failed, the best so far, an ETA.

`SweepProgress` is a Tune callback on the driver. On a terminal its status line stays at the bottom
and is rewritten in place about once a second while the per-epoch lines scroll above it; without a
terminal (CI, a Ray Job's log) the same line is printed as plain text whenever a trial finishes
and at most once a minute otherwise, so a log file stays readable.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import time
from dataclasses import dataclass, field

import ray
from ray import tune

from raytrain.formatting import format_duration
from raytrain.naming import EXPERIMENT_KEY, REPLAYED

LIVE_REFRESH_S = 1.0  # how often the terminal line is redrawn
PLAIN_EVERY_S = 60.0  # how often a plain log gets the line when no trial finished in between
CLEAR_LINE = "\r\x1b[2K"  # carriage return, then erase the whole line (VT100; every terminal emulator has it)


@dataclass(frozen=True)
class TrialState:
    """What the status needs of one trial, read off Tune's Trial."""

    name: str
    status: str  # Tune's: PENDING, RUNNING, PAUSED (a pbt member between two runs), TERMINATED, ERROR
    epochs_done: int
    epochs_planned: int
    seconds: float  # training time so far
    best: float | None  # its best val macro F1 so far
    cpu: float = 0.0  # what it asks of the cluster
    gpu: float = 0.0


@dataclass(frozen=True)
class SweepStatus:
    running: int
    done: int
    pending: int
    failed: int
    best: tuple[str, float] | None
    epochs_done: int
    epochs_left: int  # at most: patience and the scheduler can stop trials sooner
    eta_s: float | None = field(compare=False)  # it changes every second: not news by itself

    def line(self, elapsed_s: float) -> str:
        best = f"best {self.best[1]:.3f} ({self.best[0]})" if self.best else "best -"
        if self.epochs_left == 0:
            eta = "finishing" if self.running else "ended"
        else:
            eta = "ETA -" if self.eta_s is None else f"ETA ≤ {format_duration(self.eta_s)}"
        return (
            f"trials: {self.running} running, {self.done} done, {self.pending} pending, {self.failed} failed | "
            f"{best} | epochs {self.epochs_done}/{self.epochs_done + self.epochs_left} | "
            f"{format_duration(elapsed_s)} elapsed, {eta}"
        )


def sweep_status(trials: list[TrialState], planned: int, epochs_per_unproposed: int) -> SweepStatus:
    """The counts, the best trial and the ETA. `planned` counts trials a searcher has not proposed
    yet (pending, with `epochs_per_unproposed` each). The ETA is the epochs left times the mean
    epoch time, shared among the trials running now: an upper bound, since trials can stop early."""
    running = sum(t.status == "RUNNING" for t in trials)
    done = sum(t.status == "TERMINATED" for t in trials)
    failed = sum(t.status == "ERROR" for t in trials)
    unproposed = max(0, planned - len(trials))
    pending = len(trials) - running - done - failed + unproposed
    scored = [t for t in trials if t.best is not None]
    best = max(scored, key=lambda t: t.best) if scored else None
    unfinished = [t for t in trials if t.status not in ("TERMINATED", "ERROR")]
    epochs_left = sum(max(0, t.epochs_planned - t.epochs_done) for t in unfinished) + unproposed * epochs_per_unproposed
    epochs_done = sum(t.epochs_done for t in trials)
    timed = [t.seconds / t.epochs_done for t in trials if t.epochs_done]
    eta = None
    if timed:
        eta = epochs_left * (sum(timed) / len(timed)) / max(1, running)
    return SweepStatus(
        running, done, pending, failed, (best.name, best.best) if best else None, epochs_done, epochs_left, eta
    )


def counting_started_as_running(
    trials: list[TrialState], capacity: dict[str, float], max_concurrent: int | None = None
) -> list[TrialState]:
    """The trials with those being started counted as RUNNING. Tune calls a trial RUNNING only once
    its process is up, which on a small machine is seconds of a one-epoch trial; until then it is
    PENDING like one still waiting for resources. A pending trial that the free CPUs and GPUs (and
    the concurrency limit) admit, taken in Tune's order, is one Tune is starting. So is a PAUSED
    one: PBT pauses a member at a perturbation epoch and starts it again at once where there is room
    (with the weights it copied, or to let a waiting member train), and it waits like a pending one."""
    running = [t for t in trials if t.status == "RUNNING"]
    free = {
        "cpu": capacity.get("CPU", 0.0) - sum(t.cpu for t in running),
        "gpu": capacity.get("GPU", 0.0) - sum(t.gpu for t in running),
    }
    slots = len(trials) if max_concurrent is None else max_concurrent - len(running)
    counted = []
    for trial in trials:
        # a little slack: fractional CPUs (0.6 per trial) add up to 1.7999999999999998
        if (
            trial.status in ("PENDING", "PAUSED")
            and slots > 0
            and trial.cpu <= free["cpu"] + 1e-9
            and trial.gpu <= free["gpu"] + 1e-9
        ):
            trial = dataclasses.replace(trial, status="RUNNING")
            free["cpu"] -= trial.cpu
            free["gpu"] -= trial.gpu
            slots -= 1
        counted.append(trial)
    return counted


def trial_state(trial, status: str | None = None) -> TrialState:
    experiment = trial.config[EXPERIMENT_KEY]
    result = trial.last_result or {}
    best = result.get("best/val/macro_f1")
    return TrialState(
        name=experiment["name"],
        status=status or trial.status,
        epochs_done=int(result.get("epoch") or 0),
        epochs_planned=int(experiment["training"]["epochs"]),
        seconds=float(result.get("time_total_s") or 0.0),
        best=float(best) if best is not None else None,
        cpu=float(experiment["resources"]["cpu"]),
        gpu=float(experiment["resources"]["gpu"] or 0.0),
    )


class EpochLines(tune.Callback):
    """A line per trial and epoch, instead of Tune's tables: the val macro F1 against the trial's best
    so far, the train loss and the speed. A trial restored after it had finished says so instead."""

    def on_trial_result(self, iteration, trials, trial, result, **info):
        experiment = trial.config[EXPERIMENT_KEY]
        if result.get(REPLAYED):
            print(f"[{experiment['name']}] had finished before the sweep stopped; not trained again", flush=True)
            return
        print(
            f"[{experiment['name']}] epoch {result['epoch']}/{experiment['training']['epochs']}  "
            f"val macro F1 {result['val/macro_f1']:.3f} (best {result['best/val/macro_f1']:.3f} @ "
            f"{result['best_epoch']})  "
            f"train loss {result['train/loss']:.3f}  {result['train/images_per_s']:.0f} img/s",
            flush=True,
        )


class SweepProgress(tune.Callback):
    """The status line of a running sweep. Holds only plain values: Tune pickles its callbacks with
    the experiment and a resumed sweep runs this same object again."""

    def __init__(self, planned: int, epochs_per_trial: int, max_concurrent: int | None = None):
        self.planned = planned
        self.epochs_per_trial = epochs_per_trial
        self.max_concurrent = max_concurrent
        self._reset()

    def _reset(self) -> None:
        self._started = time.monotonic()
        self._last_drawn = self._last_printed = 0.0
        self._last_status: SweepStatus | None = None
        self._shown: StatusLineOutput | None = None
        self._capacity: dict[str, float] = {}

    def __getstate__(self) -> dict:
        return {
            "planned": self.planned,
            "epochs_per_trial": self.epochs_per_trial,
            "max_concurrent": self.max_concurrent,
        }

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update({"max_concurrent": None, **state})  # pickled before 0.2.1 without it
        self._reset()

    def setup(self, **info) -> None:
        self._reset()
        self._capacity = ray.cluster_resources()
        if sys.stdout.isatty():
            self._shown = StatusLineOutput.install()

    def on_step_end(self, iteration, trials, **info):
        now = time.monotonic()
        if self._shown is not None and now - self._last_drawn >= LIVE_REFRESH_S:
            self._shown.set_status(self._line(trials))
            self._last_drawn = now
        elif (
            self._shown is None
            and now - self._last_printed >= PLAIN_EVERY_S
            and any(t.status == "RUNNING" for t in trials)
        ):
            self._print(trials)

    # Tune calls these before it changes the trial's status, so the status says it here
    def on_trial_complete(self, iteration, trials, trial, **info):
        self._say(trials, finished=(trial, "TERMINATED"))

    def on_trial_error(self, iteration, trials, trial, **info):
        self._say(trials, finished=(trial, "ERROR"))

    def on_experiment_end(self, trials, **info):
        if self._shown is not None:
            self._shown = None
            StatusLineOutput.uninstall()
        self._print(trials)

    def _say(self, trials, finished=None) -> None:
        if self._shown is not None:
            self._shown.set_status(self._line(trials, finished))
        else:
            self._print(trials, finished)

    def _print(self, trials, finished=None) -> None:
        """A plain line, unless it would only repeat the last one (the last trial's end and the
        sweep's end are the same news)."""
        status = self._status(trials, finished)
        if status != self._last_status:
            print(status.line(time.monotonic() - self._started), flush=True)
            self._last_status, self._last_printed = status, time.monotonic()

    def _line(self, trials, finished=None) -> str:
        return self._status(trials, finished).line(time.monotonic() - self._started)

    def _status(self, trials, finished) -> SweepStatus:
        states = [trial_state(t, finished[1] if finished and t is finished[0] else None) for t in trials]
        states = counting_started_as_running(states, self._capacity, self.max_concurrent)
        return sweep_status(states, self.planned, self.epochs_per_trial)


class StatusLineOutput:
    """sys.stdout while a terminal shows the status line: each write first erases the line, and once
    the text ends a line, the status line is drawn again below it. Everything printed (per-epoch
    lines, warnings, tracebacks) therefore scrolls above the status, which stays at the bottom."""

    def __init__(self, terminal):
        self.terminal = terminal
        self.status = ""
        self.at_line_start = True

    @classmethod
    def install(cls) -> StatusLineOutput:
        if isinstance(sys.stdout, cls):
            return sys.stdout
        sys.stdout = cls(sys.stdout)
        return sys.stdout

    @classmethod
    def uninstall(cls) -> None:
        """Erase the status line and give stdout back; safe to call when none is installed (the
        sweep's `finally`, after Ctrl+C, calls it)."""
        if isinstance(sys.stdout, cls):
            shown = sys.stdout
            shown.terminal.write(CLEAR_LINE if shown.status and shown.at_line_start else "")
            shown.terminal.flush()
            sys.stdout = shown.terminal

    def set_status(self, status: str) -> None:
        width = shutil.get_terminal_size((120, 24)).columns
        self.status = status if len(status) < width else status[: width - 2] + "…"
        if self.at_line_start:
            self.terminal.write(CLEAR_LINE + self.status)
            self.terminal.flush()

    def write(self, text: str) -> int:
        if self.status and self.at_line_start:
            self.terminal.write(CLEAR_LINE)
        self.terminal.write(text)
        if text:
            self.at_line_start = text.endswith("\n")
        if self.status and self.at_line_start:
            self.terminal.write(self.status)
        return len(text)

    def flush(self) -> None:
        self.terminal.flush()

    def isatty(self) -> bool:
        return True

    def __getattr__(self, name):  # encoding, fileno, ...: the terminal's own
        return getattr(self.terminal, name)
