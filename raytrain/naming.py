"""How an experiment's name says what it belongs to: `<name>/seed-<seed>` is one repeat of `<name>`,
`<search>/t007` the 7th trial an adaptive search proposed. Plain strings, no imports: the readers
(results, compare, report) need these without loading the config schema (pydantic) that writes them.
"""

from __future__ import annotations

SEED_SUFFIX = "/seed-"


def repeat_name(name: str, seed: int) -> str:
    """The name of `name`'s repeat with `seed`: `baseline/seed-2`."""
    return f"{name}{SEED_SUFFIX}{seed}"


def adaptive_trial_name(search_name: str, number: int) -> str:
    """The name of the search's `number`-th proposed trial (from 1): `lr_search/t007`."""
    return f"{search_name}/t{number:03d}"


def group_of(experiment: str) -> str:
    """The experiment a repeat belongs to: `baseline/seed-2` -> `baseline`. A searched trial
    (`lr_search/t007`) is its own group: each is a different point."""
    return experiment.split(SEED_SUFFIX)[0]


def search_of(experiment: str) -> str | None:
    """The adaptive search a trial belongs to: `lr_search/t007` -> `lr_search`; None for others."""
    search, sep, trial = experiment.rpartition("/t")
    return search if sep and trial.isdigit() and "/" not in search else None
