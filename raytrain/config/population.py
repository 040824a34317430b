"""Population based training (search.algorithm: pbt or pb2) in config terms: which knobs a member can
change mid-run and what a change means, and the config errors for what PBT cannot do.

A member changes knobs only when it copies another member's weights (an exploit), which happens
between two epochs: the member restarts from the copied checkpoint with the new values
(training/population.py applies them). So every change below takes effect from the next epoch.
No torch, no ray: `raytrain validate` checks a PBT config without either.
"""

from __future__ import annotations

from pathlib import Path

from raytrain.config.messages import origin_of

# knob -> what a new value does to a member that has already trained some epochs
MUTABLE_KNOBS = {
    "training.lr": "replaces the peak of the one-cycle schedule: the rest of the schedule (warm-up or annealing) "
    "is scaled to it from the next epoch",
    "training.weight_decay": "the optimiser's decay of the weights from the next epoch",
    "model.dropout": "the head's dropout probability from the next epoch",
    "loss.type": "the training loss from the next epoch",
    "loss.label_smoothing": "the training loss from the next epoch",
    "loss.focal_gamma": "the training loss from the next epoch",
    "loss.use_class_weights": "the training loss from the next epoch",
    "data.weighted_sampler": "how train batches are drawn from the next epoch",
    **{
        f"augmentation.{name}": "batch augmentation from the next epoch"
        for name in ("hflip", "rotation", "scale", "translate", "brightness", "contrast", "random_erasing")
    },
    "augmentation.mixup_alpha": "batch augmentation from the next epoch",
}

# why the knobs people most often try cannot change once a member has trained
_FIXED_BECAUSE = {
    "model.arch": "the weights a member copies belong to one architecture",
    "model.pretrained": "it only decides the weights a member starts from",
    "data.img_size": "the weights were trained at one input size",
    "data.channels": "the weights were trained on one number of channels",
    "data.val_fraction": "every member must be scored on the same val images",
    "training.batch_size": "it sets the steps per epoch, so the length of the one-cycle schedule",
    "training.epochs": "it sets the length of the one-cycle schedule every member follows",
    "training.onecycle_pct_start": "it sets the shape of the one-cycle schedule",
    "training.optimizer": "the optimiser state a member copies belongs to one optimiser",
    "other.seed": "each member keeps its own seed (other.seed + its number - 1)",
}

# pb2 models each knob as a number in [low, high]: no categories
_PB2_KINDS = ("uniform", "loguniform", "randint")


def population_problems(raw: dict, space: dict, algorithm: str, origins: dict[str, str], path: Path) -> list[str]:
    """What population based training cannot do with this config, each problem with its fix."""
    search = raw.get("search") if isinstance(raw.get("search"), dict) else {}
    problems = []
    scheduler = search.get("scheduler")
    if isinstance(scheduler, dict) and scheduler.get("type") == "asha":
        where = origin_of("search.scheduler.type", origins, path)
        problems.append(
            f"{where}: search.scheduler: asha does not mix with algorithm {algorithm}: {algorithm} is itself the "
            "scheduler, and a member ASHA stopped could no longer be copied; remove search.scheduler"
        )
    interval = search.get("perturbation_interval")
    epochs = raw.get("training", {}).get("epochs") if isinstance(raw.get("training"), dict) else None
    where = origin_of("search.perturbation_interval" if interval is not None else "search.algorithm", origins, path)
    if interval is None:
        problems.append(
            f"{where}: search.perturbation_interval: algorithm {algorithm} needs it: the epochs each member trains "
            "between two chances to copy a stronger one, e.g. perturbation_interval: 2"
        )
    elif isinstance(interval, int) and isinstance(epochs, int) and interval >= epochs:
        problems.append(
            f"{where}: search.perturbation_interval: {interval} epochs, but training.epochs is {epochs}, so no member "
            f"would ever copy another; make it at most {max(1, epochs // 2)} (a few decisions per run)"
        )
    if search.get("max_concurrent") is not None:
        problems.append(
            f"{origin_of('search.max_concurrent', origins, path)}: search.max_concurrent: does not mix with algorithm "
            f"{algorithm}: Tune would make the members in turns instead of training them together; the members that "
            "train at once are those the resources fit (resources.cpu / resources.gpu per member), the others take "
            "turns at the perturbation epochs"
        )
    factors = search.get("perturbation_factors")
    if isinstance(factors, list) and any(not isinstance(f, (int, float)) or f <= 0 for f in factors):
        where = origin_of("search.perturbation_factors", origins, path)
        problems.append(f"{where}: search.perturbation_factors: must be numbers > 0, got {factors!r}")
    space_where = origin_of("search.space", origins, path)
    for dotted, spec in space.items():
        kind = next(iter(spec)) if isinstance(spec, dict) and len(spec) == 1 else None
        if dotted == "other.seed" and kind == "grid":
            continue  # seed repeats: loading._adaptive_problems says so
        if dotted not in MUTABLE_KNOBS:
            reason = _FIXED_BECAUSE.get(dotted, "it fixes what a member's weights and optimiser state are")
            some = ", ".join(list(MUTABLE_KNOBS)[:3])
            problems.append(
                f"{space_where}: search.space.{dotted}: algorithm {algorithm} changes knobs mid-run and {dotted} "
                f"cannot change once a member has trained ({reason}); search it with algorithm: optuna, or fix it "
                f"and let {algorithm} change {some}, ... (README: Population based training)"
            )
        elif algorithm == "pb2" and kind is not None and kind not in _PB2_KINDS:
            problems.append(
                f"{space_where}: search.space.{dotted}: {kind}: pb2 models each knob as a number between two bounds "
                "(uniform, loguniform, randint); use algorithm: pbt for a categorical knob"
            )
    return problems
