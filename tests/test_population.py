"""Population based training's parts, each on its own and fast: the members drawn up front, the
explore step, what a new learning rate or decay does to a member's optimiser, the lineage in its
history, and the scheduler's state rebuilt on resume. The real population (killed and resumed) is
tests/test_pbt.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from ray import tune
from ray.train._internal.session import _TrainingResult
from ray.train._internal.storage import StorageContext
from ray.tune.experiment import Trial

from raytrain import lineage
from raytrain.config import load_config
from raytrain.config.search_space import perturb, population_members
from tests.conftest import PROJECT_ROOT

SPACE = {
    "training.lr": {"loguniform": [1.0e-4, 1.0e-2]},
    "model.dropout": {"uniform": [0.0, 0.5]},
    "loss.type": {"choice": ["ce", "focal"]},
}


def pbt_config(tmp_path, **search):
    fields = {"algorithm": "pbt", "population": 4, "perturbation_interval": 2, "seed": 7} | search
    lines = [f"extends: {PROJECT_ROOT / 'configs/demo/baseline_small.yaml'}", "name: pop", "training: {epochs: 6}"]
    lines += ["search:", *(f"  {k}: {v}" for k, v in fields.items()), "  space:"]
    lines += [f"    {knob}: {json.dumps(spec)}" for knob, spec in SPACE.items()]
    (tmp_path / "pop.yaml").write_text("\n".join(lines) + "\n")
    return load_config(tmp_path / "pop.yaml")


def test_members_are_named_seeded_and_drawn_up_front_the_same_way_each_time(tmp_path):
    config = pbt_config(tmp_path)
    members = population_members(config)
    assert [m.name for m in members] == ["pop/t001", "pop/t002", "pop/t003", "pop/t004"]
    # each its own seed, so a member that copies another still draws its own batches
    assert [m.other.seed for m in members] == [42, 43, 44, 45]
    assert all(1e-4 <= m.training.lr <= 1e-2 and 0 <= m.model.dropout <= 0.5 for m in members)
    assert len({m.training.lr for m in members}) == 4
    again = population_members(pbt_config(tmp_path))
    assert [m.training.lr for m in again] == [m.training.lr for m in members], "search.seed draws the same population"
    other = population_members(pbt_config(tmp_path, seed=8))
    assert [m.training.lr for m in other] != [m.training.lr for m in members]


def test_explore_scales_or_redraws_a_continuous_knob_within_its_range_and_redraws_or_keeps_a_categorical():
    rng = np.random.default_rng(0)
    start = {"training.lr": 0.009, "model.dropout": 0.45, "loss.type": "ce"}
    seen = {knob: set() for knob in start}
    for _ in range(200):
        new, done = perturb(start, SPACE, rng, resample_probability=0.25, factors=[0.8, 1.2])
        for knob, how in done.items():
            seen[knob].add(how)
        assert 1e-4 <= new["training.lr"] <= 1e-2 and 0.0 <= new["model.dropout"] <= 0.5
        if done["training.lr"] == "x 0.8":
            assert new["training.lr"] == pytest.approx(0.0072)
        if done["training.lr"] == "x 1.2":
            assert new["training.lr"] == 1e-2, "0.0108 is past the range's end: kept at the end"
        assert new["loss.type"] == "ce" or done["loss.type"] == "resampled", "a category is never multiplied"
    assert seen["training.lr"] == {"x 0.8", "x 1.2", "resampled"}
    assert seen["loss.type"] == {"kept", "resampled"}
    never = perturb(start, SPACE, rng, resample_probability=0.0, factors=[1.2])[1]
    assert never == {"training.lr": "x 1.2", "model.dropout": "x 1.2", "loss.type": "kept"}


def _row(epoch, member, lr, f1):
    return {"epoch": epoch, "val/macro_f1": f1, lineage.MEMBER: member, lineage.knob_column("training.lr"): lr}


def test_a_lineage_says_who_trained_each_epoch_with_which_values_and_where_it_copied():
    # t002 copied t001 as of epoch 2 and went on with a new lr; t001 had copied t003 as of epoch 1
    history = [
        _row(1, "p/t003", 1e-3, 0.2),
        _row(2, "p/t001", 2e-3, 0.3),
        _row(3, "p/t002", 1.6e-3, 0.5),
        _row(4, "p/t002", 1.6e-3, 0.4),
    ]
    assert lineage.is_lineage(history) and lineage.knobs_in(history) == ["training.lr"]
    assert lineage.exploits(history) == [
        {"epoch": 1, "from": "p/t003", "into": "p/t001"},
        {"epoch": 2, "from": "p/t001", "into": "p/t002"},
    ]
    schedule = lineage.schedule_csv(history).splitlines()
    assert schedule[0] == "epoch,member,training.lr,val/macro_f1,copied_from"
    assert schedule[1:] == [
        "1,p/t003,0.001,0.2,",
        "2,p/t001,0.002,0.3,p/t003@1",
        "3,p/t002,0.0016,0.5,p/t001@2",
        "4,p/t002,0.0016,0.4,",
    ]
    experiment = {"name": "p/t002", "training": {"lr": 1.6e-3, "epochs": 4}}
    assert lineage.config_at(experiment, history, 2)["training"] == {"lr": 2e-3, "epochs": 4}
    assert experiment["training"]["lr"] == 1.6e-3, "the member's own config is left as it was"


def _one_cycle(lr: float, weight_decay: float):
    from raytrain.config import TrainingConfig
    from raytrain.training.optim import build_optimizer, build_scheduler

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
    training = TrainingConfig(lr=lr, weight_decay=weight_decay, epochs=4)
    optimizer = build_optimizer(model, training)
    return model, optimizer, build_scheduler(optimizer, training, steps_per_epoch=10)


def test_a_new_learning_rate_replaces_the_peak_of_the_rest_of_the_one_cycle_schedule():
    from raytrain.training.population import config_knobs_win

    model, optimizer, scheduler = _one_cycle(1e-3, 0.05)
    for _ in range(15):  # into the annealing phase: the peak is at step 12
        model(torch.ones(1, 4)).sum().backward()
        optimizer.step()
        scheduler.step()
    saved = (optimizer.state_dict(), scheduler.state_dict())
    old_lr = optimizer.param_groups[0]["lr"]

    _, copy_optimizer, copy_scheduler = _one_cycle(2e-3, 0.01)  # the member's new values
    with config_knobs_win(copy_optimizer, copy_scheduler):
        copy_optimizer.load_state_dict(saved[0])
        copy_scheduler.load_state_dict(saved[1])
    _, fresh_optimizer, fresh_scheduler = _one_cycle(2e-3, 0.01)
    for _ in range(15):
        fresh_optimizer.step()
        fresh_scheduler.step()
    for copied, fresh in zip(copy_optimizer.param_groups, fresh_optimizer.param_groups):
        # from this step on, the schedule of a run with the new peak: the same place in it, scaled
        assert copied["lr"] == pytest.approx(fresh["lr"]) == pytest.approx(2 * old_lr)
        assert (copied["max_lr"], copied["initial_lr"], copied["min_lr"]) == (
            fresh["max_lr"],
            fresh["initial_lr"],
            fresh["min_lr"],
        )
        assert copied["weight_decay"] == fresh["weight_decay"]
    assert copy_scheduler.last_epoch == 15 and copy_scheduler.get_last_lr()[0] == pytest.approx(2 * old_lr)
    assert copy_optimizer.state_dict()["state"], "the Adam moments are the checkpoint's"


def _trial(tmp_path, name: str, trial_id: str, **experiment) -> Trial:
    storage = StorageContext(storage_path=str(tmp_path), experiment_dir_name="sweep", trial_dir_name=f"x_{trial_id}")
    config = {
        "experiment": {
            "name": name,
            "training": {"epochs": 6, "lr": 1e-3},
            "model": {"dropout": 0.2},
            "loss": {"type": "ce"},
            "other": {"seed": int(trial_id), "patience": 10},
        }
        | experiment,
        lineage.POPULATION_KEY: {"knobs": list(SPACE), "perturbation_interval": 2},
    }
    return Trial("__fake", config=config, stub=True, storage=storage, trial_id=trial_id)


class _Controller:
    """What Tune's scheduler asks of the controller here: the trials, and no searcher."""

    search_alg = None

    def __init__(self, trials):
        self.trials = trials

    def get_trials(self):
        return self.trials

    def get_live_trials(self):
        return self.trials


def _search(algorithm="pbt") -> dict:
    space = SPACE if algorithm == "pbt" else {k: v for k, v in SPACE.items() if "choice" not in v}
    return {
        "algorithm": algorithm,
        "perturbation_interval": 2,
        "quantile_fraction": 0.5,
        "resample_probability": 0.25,
        "perturbation_factors": [0.8, 1.2],
        "seed": 1,
        "space": space,
    }


def test_a_resumed_member_decides_at_the_same_epochs_as_before_the_stop(tmp_path):
    from raytrain.sweeps.population import build_population_scheduler

    restored, fresh = _trial(tmp_path, "p/t001", "1"), _trial(tmp_path, "p/t002", "2")
    # what Tune's experiment state gives back for a member that had reached epoch 3
    restored.update_last_result({"epoch": 3, "val/macro_f1": 0.4, "epochs_since_best": 0})
    checkpoint = tune.Checkpoint(str(tmp_path / "sweep" / "x_1" / "checkpoint_000002"))
    restored.run_metadata.checkpoint_manager._latest_checkpoint_result = _TrainingResult(checkpoint, {})
    scheduler = build_population_scheduler(_search())
    controller = _Controller([restored, fresh])
    for trial in (restored, fresh):
        scheduler.on_trial_add(controller, trial)
    state = scheduler._trial_state[restored]
    assert (state.last_perturbation_time, state.last_score, state.last_checkpoint) == (2, 0.4, checkpoint)
    assert scheduler._trial_state[fresh].last_perturbation_time == 0
    # its next epoch, 4, is its next decision; a member counting from zero would decide at 3 and 5
    result = {"epoch": 4, "val/macro_f1": 0.5, "epochs_since_best": 0}
    assert scheduler.on_trial_result(controller, restored, {**result, "epoch": 3}) == scheduler.CONTINUE
    assert state.last_perturbation_time == 2, "epoch 3 is no decision"
    scheduler.on_trial_result(controller, restored, result)
    assert state.last_perturbation_time == 4


def test_a_resumed_synchronous_population_decides_asynchronously(tmp_path):
    """Tune's record can leave members on different sides of a decision (t002 recorded at epoch 1
    though both had decided at 2); Tune's synchronous PBT then waited for ever (tests/test_pbt.py).
    Resumed, each member decides at its own next decision epoch."""
    from raytrain.sweeps.population import build_population_scheduler

    ahead, behind = _trial(tmp_path, "p/t001", "1"), _trial(tmp_path, "p/t002", "2")
    for trial, epoch in ((ahead, 2), (behind, 1)):
        trial.update_last_result({"epoch": epoch, "val/macro_f1": 0.3, "epochs_since_best": 0})
    # quantile 0: decisions that copy nothing, so the controller needs no checkpoints to hand out
    scheduler = build_population_scheduler(_search() | {"synchronous": True, "quantile_fraction": 0.0})
    assert scheduler._synch
    controller = _Controller([ahead, behind])
    for trial in (ahead, behind):
        scheduler.on_trial_add(controller, trial)
    assert not scheduler._synch
    result = {"val/macro_f1": 0.2, "epochs_since_best": 0}
    assert scheduler.on_trial_result(controller, ahead, {**result, "epoch": 3}) == scheduler.CONTINUE, "no wait"
    scheduler.on_trial_result(controller, behind, {**result, "epoch": 2})
    assert [scheduler._trial_state[t].last_perturbation_time for t in (ahead, behind)] == [2, 2]
    scheduler.on_trial_result(controller, ahead, {**result, "epoch": 4})
    assert scheduler._trial_state[ahead].last_perturbation_time == 4


def test_a_members_last_epoch_is_never_copied(tmp_path):
    from raytrain.sweeps.population import build_population_scheduler

    member = _trial(tmp_path, "p/t001", "1")
    scheduler = build_population_scheduler(_search())
    controller = _Controller([member])
    scheduler.on_trial_add(controller, member)
    for last in ({"epoch": 6, "epochs_since_best": 0}, {"epoch": 4, "epochs_since_best": 10}):  # end, patience
        assert scheduler.on_trial_result(controller, member, {**last, "val/macro_f1": 0.9}) == scheduler.CONTINUE
        assert scheduler._trial_state[member].last_checkpoint is None and not scheduler._trial_state[member].last_score


@pytest.mark.parametrize("algorithm", ["pbt", "pb2"])
def test_a_member_that_copies_another_keeps_its_own_name_and_seed(tmp_path, algorithm, capsys):
    from raytrain.sweeps.population import build_population_scheduler

    weak, strong = _trial(tmp_path, "p/t001", "1"), _trial(tmp_path, "p/t002", "2", training={"epochs": 6, "lr": 5e-3})
    scheduler = build_population_scheduler(_search(algorithm))
    controller = _Controller([weak, strong])
    for trial in (weak, strong):
        scheduler.on_trial_add(controller, trial)
    for epoch in (2, 4):  # pb2 models the scores it has seen against the knobs
        for trial, score in ((weak, 0.1), (strong, 0.6)):
            result = {"epoch": epoch, "val/macro_f1": score + epoch / 100, "epochs_since_best": 0}
            trial.update_last_result(result)
            scheduler._save_trial_state(scheduler._trial_state[trial], epoch, result, trial)
    new_config, _ = scheduler._get_new_config(weak, strong)
    member = new_config["experiment"]
    assert member["name"] == "p/t001" and member["other"]["seed"] == 1, "Tune copies the whole config"
    assert 1e-4 <= member["training"]["lr"] <= 1e-2 and 0.0 <= member["model"]["dropout"] <= 0.5
    assert member["training"]["lr"] != 5e-3 or member["model"]["dropout"] != 0.2, "nothing was perturbed"
    said = capsys.readouterr().out
    assert said.startswith("[p/t001] after epoch 4 (val macro F1 0.140) copies p/t002 as of its epoch 4 (0.640)")
    assert "training.lr 0.005 -> " in said


def test_a_member_about_to_copy_a_checkpoint_deleted_since_the_kill_goes_on_from_its_own(tmp_path, capsys):
    from raytrain.sweeps.repair import _repoint_lost_checkpoint

    member = _trial(tmp_path, "p/t001", "1")
    own = tmp_path / "sweep" / "x_1"
    for index in (2, 4):
        (own / f"checkpoint_00000{index}").mkdir(parents=True)
    gone = tune.Checkpoint(str(tmp_path / "sweep" / "x_2" / "checkpoint_000007"))
    member.run_metadata.checkpoint_manager._latest_checkpoint_result = _TrainingResult(gone, {})
    _repoint_lost_checkpoint(member)
    assert member.checkpoint.path == str(own / "checkpoint_000004")
    assert member.storage.current_checkpoint_index == 4
    assert "[p/t001] the checkpoint it was to copy" in capsys.readouterr().out


def test_a_trial_that_starts_again_keeps_its_results_in_result_json(tmp_path, monkeypatch):
    """Tune's own logger copies the storage's result.json (synced every ~10 s) over the newer one
    in the driver's staging folder whenever a trial starts again: PBT restarts members all the time."""
    import ray.train._internal.storage
    from ray.tune.logger import JsonLoggerCallback

    from raytrain.sweeps.trial_logs import ResultJsonLog

    # the driver's staging folder lives in the Ray session's folder: here, without a Ray session
    monkeypatch.setattr(ray.train._internal.storage, "_get_ray_train_session_dir", lambda: str(tmp_path / "session"))

    for logger, kept in ((ResultJsonLog(), 3), (JsonLoggerCallback(), 1)):
        member = _trial(tmp_path / type(logger).__name__, "p/t001", "1")
        checkpoint = tune.Checkpoint(str(tmp_path / "checkpoint_000001"))
        member.run_metadata.checkpoint_manager._latest_checkpoint_result = _TrainingResult(checkpoint, {})
        member.init_local_path()  # names the trial's folders, as Tune does before a trial first starts
        staged = member.local_path + "/result.json"
        stored = member.storage.trial_fs_path + "/result.json"
        for path, lines in ((stored, 1), (staged, 3)):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text("".join(json.dumps({"epoch": e}) + "\n" for e in range(1, lines + 1)))
        logger.log_trial_start(member)
        logger.log_trial_end(member)
        assert len(Path(staged).read_text().splitlines()) == kept, type(logger).__name__


def test_a_limit_on_members_at_once_is_refused_before_ray_starts(tmp_path, run_cli):
    # Tune would make the members in turns (its grid generator limits trials made, not running)
    shown = run_cli(
        "sweep",
        PROJECT_ROOT / "configs/search/pbt_search.yaml",
        "--set",
        "model.pretrained=false",
        "--data-root",
        tmp_path,
        "--runs-dir",
        tmp_path / "runs",
        "--max-concurrent",
        "2",
        "--yes",
    )
    assert shown.code == 2 and "Traceback" not in shown.err
    assert "--max-concurrent 2: does not mix with search.algorithm pbt" in shown.err
