"""A failed trial in one line: the message of the exception that ended it, read from the error.txt
Tune saved beside the trial, and where the whole traceback is. The publisher logs it and the
outcome prints it, so it lives here, where both import it.
"""

from __future__ import annotations

import re
from pathlib import Path

import ray

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
