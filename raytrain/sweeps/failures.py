"""A failed trial: whether running it again can help, and its failure in one line.

Retries: a trial that raises one of raytrain's user errors (a bad config or dataset, missing model
weights, a batch that does not fit in GPU memory) fails at once; anything else (a lost node, an I/O
error) keeps Tune's retries. The one line: the message of the exception that ended it, read from the
error.txt Tune saved beside the trial, and where the whole traceback is. The publisher logs it and
the outcome prints it, so it lives here, where both import it.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import ray
from ray.tune.execution.tune_controller import TuneController

from raytrain.errors import UserError
from raytrain.sweeps import storage as tune_storage

# a failure's one-line reason (summary, experiment_log.jsonl): enough for the longest of raytrain's
# own messages, which name a file and the fix; error.txt beside the trial has the rest
MAX_REASON_CHARS = 600


ERROR_FILE = "error.txt"  # what Tune names a trial's traceback file


def error_summary(trial) -> str:
    """The trial's last failure as one line: its exception's own message, whole lines from the
    first, up to MAX_REASON_CHARS, and where the full traceback is."""
    text = _error_text(trial)
    where = f"{tune_storage.trial_location(trial)}/{ERROR_FILE}" if trial.path else ERROR_FILE
    if text is None:
        return f"trial failed; no {ERROR_FILE} was saved (looked for {where})"
    return f"{failure_reason(text)} (full traceback: {where})"


def _error_text(trial) -> str | None:
    # the driver writes error.txt to its Ray session's staging folder and syncs it to the storage
    # later; trial.error_file needs a running Ray (docs/ray-notes.md), so a command run after the
    # sweep, without Ray, reads the synced copy from the storage
    if ray.is_initialized() and trial.error_file and Path(trial.error_file).is_file():
        return Path(trial.error_file).read_text(errors="replace")
    try:
        return trial.get_error()
    except OSError:
        return None


_TRACEBACK_FRAME = re.compile(r"^\s+File \"")


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def failure_reason(error_text: str) -> str:
    """error.txt -> the message of the exception that ended the last failure, on one line.

    error.txt holds one block per failure ("Failure # N ..."), each a traceback ending in
    `Type: message`, where the message may run over several lines: the useful part is its start.
    """
    text = _ANSI.sub("", error_text)
    block = text.split("Failure # ")[-1].splitlines()
    frames = [i for i, line in enumerate(block) if _TRACEBACK_FRAME.match(line)]
    after = block[frames[-1] + 1 :] if frames else block[1:]
    # the frame's source and caret lines are indented; the exception starts at the first line that is not
    start = next((i for i, line in enumerate(after) if line.strip() and not line.startswith((" ", "\t"))), None)
    lines = [line.strip() for line in after[start:]] if start is not None else []
    message = " ".join(line for line in lines if line)
    message = re.sub(
        r"^(?:[A-Za-z_][\w]*\.)+(?=\w+: )", "", message
    )  # raytrain.training.models.ModelError -> ModelError
    if not message:
        return "trial failed"
    if len(message) > MAX_REASON_CHARS:
        message = message[: MAX_REASON_CHARS - 1].rsplit(" ", 1)[0] + " …"
    return message


def retrying_cannot_fix(exception: BaseException) -> bool:
    """Whether a trial's failure is one of raytrain's user errors, which fail the same way on every
    try. Ray hands the driver the trial's exception as a RayTaskError that is also an instance of the
    original class; `cause` is that original where the dual class could not be made."""
    return isinstance(exception, UserError) or isinstance(getattr(exception, "cause", None), UserError)


def fail_user_errors_at_once() -> None:
    """Make Tune fail a trial at its first user error instead of retrying it MAX_FAILURES times.

    Tune has no setting for it: FailureConfig.max_failures counts every failure alike, and Tune
    decides whether to retry (Trial.should_recover) before any callback hears of the failure. So the
    one place that sees the exception first, TuneController._process_trial_failure, is wrapped: for a
    user error the trial's limit is lowered to its failures so far while Tune counts this one and
    decides, then put back, so a later `resume` retries a lost node as before (docs/ray-notes.md).
    Idempotent; the driver calls it before each fit()."""
    original = TuneController._process_trial_failure
    if getattr(original, "raytrain_no_retry", False):
        return

    @functools.wraps(original)
    def process_trial_failure(controller, trial, exception):
        if not retrying_cannot_fix(exception):
            return original(controller, trial, exception)
        limit = trial.max_failures
        trial.max_failures = trial.run_metadata.num_failures
        try:
            return original(controller, trial, exception)
        finally:
            trial.max_failures = limit

    process_trial_failure.raytrain_no_retry = True
    TuneController._process_trial_failure = process_trial_failure
