"""Tune's own record of a sweep's trials (its experiment state), read without a running Tuner.
Publisher and outcome both read it, so it is here, where both import it.
"""

from __future__ import annotations

from ray import tune

from raytrain import artifacts
from raytrain.sweeps.settings import SweepSettings


def tune_trials(settings: SweepSettings) -> list | None:
    """The sweep's trials as Tune recorded them, or None (with a warning) where that record is gone
    or damaged: Tune writes its state file in place, so a disk that fills up can leave it torn."""
    try:
        return tune.ExperimentAnalysis(settings.experiment_path).trials
    except (OSError, ValueError, EOFError) as err:  # a torn JSON state file is a ValueError
        artifacts.warn_damaged(
            f"{settings.experiment_path}: Tune's record of sweep {settings.name} is unreadable "
            f"({type(err).__name__}: {str(err)[:120]}); the outcome is taken from "
            f"{settings.runs_dir}/{artifacts.EXPERIMENT_LOG}"
        )
        return None
