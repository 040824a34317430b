"""A population member's lineage: which member trained each epoch of its weights, with which knob
values, and where it copied another member's weights (an exploit of population based training).

Every epoch's row of a member's history (history.json, result.json) carries `pbt/member` (the
member that trained that epoch) and `pbt/<knob>` (each searched knob's value in force). A member
that copies another's checkpoint takes that member's history with it, so a member's history is
the line of epochs its weights went through, as Ray's own pbt_policy files are: an exploit is
where the member changes from one row to the next. The trainable writes the rows, the publisher
the schedule and config.yaml, the report draws them. Standard library only.
"""

from __future__ import annotations

import copy
import csv
import io

# the trial config's key beside naming.EXPERIMENT_KEY for a population member:
# {"knobs": [dotted, ...], "perturbation_interval": epochs}
POPULATION_KEY = "population"
MEMBER = "pbt/member"  # the member (experiment name) that trained the epoch
KNOB_PREFIX = "pbt/"
COPIED_FROM = "copied_from"  # schedule.csv: `<member>@<epoch>` on the first epoch after an exploit


def knob_column(knob: str) -> str:
    """`training.lr` -> `pbt/training.lr`: the value in force at an epoch, in history rows."""
    return f"{KNOB_PREFIX}{knob}"


def value_of(experiment: dict, knob: str):
    section, key = knob.split(".", 1)
    return experiment[section][key]


def epoch_record(experiment: dict, knobs: list[str]) -> dict:
    """What a member adds to each epoch's metrics: itself and the knob values it trains with."""
    return {MEMBER: experiment["name"], **{knob_column(k): value_of(experiment, k) for k in knobs}}


def knobs_in(history: list[dict]) -> list[str]:
    """The knobs a lineage records, in the order its rows hold them."""
    first = history[0] if history else {}
    return [key[len(KNOB_PREFIX) :] for key in first if key.startswith(KNOB_PREFIX) and key != MEMBER]


def is_lineage(history: list[dict]) -> bool:
    return bool(history) and MEMBER in history[0]


def final_values(history: list[dict]) -> dict:
    """{`pbt/<knob>`: its value at the lineage's last epoch}: the values a member ended with, which
    `compare` shows beside config.yaml's (those of its best epoch); {} for any other history."""
    if not is_lineage(history):
        return {}
    return {knob_column(k): history[-1].get(knob_column(k)) for k in knobs_in(history)}


def final_value_columns(columns) -> list[str]:
    """The final_values columns among a frame's `columns`."""
    return [c for c in columns if c.startswith(KNOB_PREFIX) and c != MEMBER]


def config_at(experiment: dict, history: list[dict], epoch: int) -> dict:
    """The member's config with the knob values in force at `epoch` (its best, for config.yaml and
    best.pt): the values the weights of that epoch were trained with."""
    row = next((r for r in history if r.get("epoch") == epoch), None)
    config = copy.deepcopy(experiment)
    if row is None:
        return config
    for knob in knobs_in(history):
        section, key = knob.split(".", 1)
        config[section][key] = row[knob_column(knob)]
    return config


def exploits(history: list[dict]) -> list[dict]:
    """Where the line changed member: {"epoch": the copied checkpoint's epoch, "from": the member
    copied, "into": the member that went on from it}, oldest first."""
    found = []
    for before, after in zip(history, history[1:]):
        if before.get(MEMBER) != after.get(MEMBER):
            found.append({"epoch": before["epoch"], "from": before.get(MEMBER), "into": after.get(MEMBER)})
    return found


def schedule_csv(history: list[dict], metric: str = "val/macro_f1") -> str:
    """schedule.csv: one row per epoch of the lineage: epoch, the member that trained it, each knob
    in force, its val macro F1, and `<member>@<epoch>` where it went on from a copied checkpoint."""
    knobs = knobs_in(history)
    copied = {e["epoch"] + 1: f"{e['from']}@{e['epoch']}" for e in exploits(history)}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["epoch", "member", *knobs, metric, COPIED_FROM])
    for row in history:
        writer.writerow(
            [
                row.get("epoch"),
                row.get(MEMBER),
                *(row.get(knob_column(k)) for k in knobs),
                row.get(metric),
                copied.get(row.get("epoch"), ""),
            ]
        )
    return out.getvalue()
