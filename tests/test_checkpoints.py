"""The checkpoint policy: one copy of the model and optimiser per checkpoint (sizes, a real small
torchvision model), best.pt written only when the best epoch changes and referred to after,
restore through the reference (and past a checkpoint a kill -9 left deleted), the cadence knob,
and a published trial pruned to small files in the Tune storage."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
import torch
from ray import tune

from raytrain import artifacts
from raytrain.config import ConfigError, config_hash, load_config, validate_config
from raytrain.naming import EXPERIMENT_KEY
from raytrain.sweeps.policy import PatienceStopper, checkpoint_config
from raytrain.training import best_weights, checkpoints, trainable
from raytrain.training.checkpoints import CheckpointCadence
from raytrain.training.trainable import STATE_FILE, TrainingRun, TrainState, staging_folder, train_experiment
from tests.conftest import CONFIGS_DIR, tiny_config

SMALL_ARCH = "shufflenet_v2_x0_5"  # 1.4 M parameters: a real model whose state is quick to write


def serialized_size(obj) -> int:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.tell()


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def two_checkpoints(tiny_dataset, tmp_path_factory):
    """A real TrainingRun's checkpoints after epoch 1 (the best so far) and epoch 2 (not better), laid out
    as Tune lays out a trial's folders."""
    cfg = validate_config(tiny_config(**{"model.arch": SMALL_ARCH}))
    trial, state = TrainingRun(cfg, tiny_dataset), TrainState()
    trial_dir = tmp_path_factory.mktemp("trial")
    folders, holds = [], []
    for epoch in (1, 2):
        if epoch == 2:
            state.best_val_macro_f1 = 2.0  # out of reach: epoch 2 cannot become the best
        trial.run_epoch(epoch, state)
        folder = trial_dir / f"checkpoint_{epoch - 1:06d}"
        folder.mkdir()
        holds.append(trial.write_checkpoint(folder, state, final=False))
        folders.append(folder)
    one_copy = serialized_size(trial.model.state_dict()) + serialized_size(trial.optimizer.state_dict())
    return trial, state, folders, holds, one_copy


def test_each_checkpoint_holds_at_most_one_copy_of_the_model_and_optimiser(two_checkpoints):
    _, state, folders, holds, one_copy = two_checkpoints
    assert state.best_epoch == 1 and holds == [True, False]
    # best.pt where the best epoch changed, and only there
    assert (folders[0] / artifacts.BEST_WEIGHTS).is_file() and not (folders[1] / artifacts.BEST_WEIGHTS).exists()
    small_files = 256 * 1024  # metrics, confusion matrices, predictions, history, pickling overhead
    for folder in folders:
        size = folder_size(folder)
        assert size <= one_copy + small_files, f"{folder.name}: {size} bytes for one copy of {one_copy}"
    # the best epoch's model is in best.pt, so its state.pt leaves the model out
    assert torch.load(folders[0] / STATE_FILE, weights_only=False)["model"] is None
    assert torch.load(folders[1] / STATE_FILE, weights_only=False)["model"] is not None


def test_restore_finds_best_pt_in_the_earlier_checkpoint(two_checkpoints, tiny_dataset):
    trial, state, folders, _, _ = two_checkpoints
    restored = TrainingRun(trial.cfg, tiny_dataset)
    again = restored.restore(tune.Checkpoint.from_directory(str(folders[1])))
    assert (again.epoch, again.best_epoch, again.best_saved_epoch) == (2, 1, 1)
    for name, tensor in trial.model.state_dict().items():
        assert torch.equal(restored.model.state_dict()[name], tensor), name
    for name, tensor in trial.best_weights.items():
        assert torch.equal(restored.best_weights[name], tensor), name
    assert restored.optimizer.state_dict()["state"].keys() == trial.optimizer.state_dict()["state"].keys()
    # what publishing fetches: the latest checkpoint's small files and the best.pt it refers to
    with checkpoints.trial_artifacts(tune.Checkpoint.from_directory(str(folders[1]))) as published:
        assert best_weights.load_best_weights(published / artifacts.BEST_WEIGHTS)["epoch"] == 1
        assert artifacts.read_json(published / artifacts.HISTORY)[-1]["epoch"] == 2
        assert not (published / STATE_FILE).exists()


@pytest.mark.filterwarnings("ignore:.*to a meta parameter:UserWarning")  # loading into meta is a no-op
def test_restored_onto_a_device_the_optimisers_step_counters_stay_on_the_host(
    two_checkpoints, tiny_dataset, monkeypatch
):
    """state.pt mapped onto the device would put Adam's step counters there, and Adam reads each
    back with .item() at every step: two host syncs per parameter on CUDA. "meta" stands in for it."""
    trial, _, folders, _, _ = two_checkpoints
    monkeypatch.setattr(trainable, "pick_device", lambda gpus: torch.device("meta"))
    restored = TrainingRun(trial.cfg, tiny_dataset)
    assert restored.restore(tune.Checkpoint.from_directory(str(folders[1]))).epoch == 2
    states = list(restored.optimizer.state.values())
    assert len(states) == len(list(trial.model.parameters()))
    assert {s["step"].device.type for s in states} == {"cpu"}
    assert {s["exp_avg"].device.type for s in states} == {"meta"}, "the moments go with their parameters"


def test_restore_falls_back_to_a_whole_checkpoint_when_tunes_record_names_a_deleted_one(
    two_checkpoints, tiny_dataset, tmp_path
):
    """After a kill -9 Tune's snapshot can name a checkpoint it had already deleted."""
    trial, _, folders, _, _ = two_checkpoints
    copy = tmp_path / "trial"
    shutil.copytree(folders[0].parent, copy)
    shutil.rmtree(copy / folders[1].name)
    restored = TrainingRun(trial.cfg, tiny_dataset)
    state = restored.restore(tune.Checkpoint.from_directory(str(copy / folders[1].name)))
    assert state.epoch == 1, "continued from the checkpoint that is still there"


def test_the_cadence_saves_every_n_epochs_or_minutes_whichever_first():
    now = [0.0]
    by_epochs = CheckpointCadence(2, None, clock=lambda: now[0])
    assert [by_epochs.due(e) for e in (1, 2)] == [False, True]
    by_epochs.saved(2)
    assert not by_epochs.due(3) and by_epochs.due(4)
    by_time = CheckpointCadence(None, 5, clock=lambda: now[0])
    assert not by_time.due(7)
    now[0] = 301.0
    assert by_time.due(1)


def test_the_cadence_knobs_are_checked_and_do_not_change_the_config_hash(tmp_path):
    base = CONFIGS_DIR / "baseline.yaml"
    assert config_hash(load_config(base, ["other.checkpoint_epochs=5"])) == config_hash(load_config(base))
    assert config_hash(load_config(base, ["other.checkpoint_minutes=10"])) == config_hash(load_config(base))
    with pytest.raises(ConfigError, match=r"other.checkpoint_epochs: must be >= 1, got 0"):
        load_config(base, ["other.checkpoint_epochs=0"])
    with pytest.raises(ConfigError, match=r"other: checkpoint_epochs and checkpoint_minutes are both null.*set one"):
        load_config(base, ["other.checkpoint_epochs=null", "other.checkpoint_minutes=null"])


class _CheckpointedEpochs(tune.Callback):
    def __init__(self):
        self.epochs = []
        self.staging, self.staging_at_first_result = None, None

    def on_trial_start(self, iteration, trials, trial, **info):
        # what an earlier process of this trial, killed inside tune.report, leaves: the trial must
        # clear it when it starts, not only at its next checkpoint (epoch 2 here). Tune calls this
        # before it starts the trainable.
        self.staging = staging_folder("cadence", trial.trial_id)
        self.staging.mkdir()
        (self.staging / STATE_FILE).write_bytes(b"from a killed process")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if self.staging_at_first_result is None:
            self.staging_at_first_result = self.staging.exists()

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        self.epochs.append(trial.last_result["epoch"])


def test_a_trial_checkpoints_at_its_cadence_and_at_its_end(ray_session, tiny_dataset, tmp_path):
    experiment = tiny_config(**{"model.arch": SMALL_ARCH, "training.epochs": 3, "other.checkpoint_epochs": 2})
    seen = _CheckpointedEpochs()
    [result] = tune.Tuner(
        tune.with_parameters(train_experiment, dataset=tiny_dataset),
        param_space={EXPERIMENT_KEY: experiment},
        run_config=tune.RunConfig(
            storage_path=str(tmp_path),
            name="cadence",
            stop=PatienceStopper(),
            checkpoint_config=checkpoint_config(),
            callbacks=[seen],
            verbose=0,
        ),
    ).fit()
    assert result.error is None
    assert list(result.metrics_dataframe["epoch"]) == [1, 2, 3], "every epoch is reported"
    assert seen.epochs == [2, 3], "a checkpoint at epoch 2 (the cadence) and 3 (the end) only"
    assert seen.staging_at_first_result is False, "the stale staging folder outlived the trial's start"
    assert not seen.staging.exists(), "the staging folder outlived the trial"
    with checkpoints.trial_artifacts(result.checkpoint) as published:
        assert [h["epoch"] for h in artifacts.read_json(published / artifacts.HISTORY)] == [1, 2, 3]
        assert (published / artifacts.BEST_WEIGHTS).is_file()


def test_a_published_trial_keeps_only_small_files_in_the_tune_storage(tiny_runs):
    trial_dirs = [p for p in (tiny_runs / artifacts.TUNE_DIR).glob("*/*") if (p / "result.json").is_file()]
    assert len(trial_dirs) == 3
    for trial_dir in trial_dirs:
        assert not list(trial_dir.rglob("*.pt")), f"{trial_dir}: weights left after publishing"
        [kept] = trial_dir.glob("checkpoint_*")
        assert {artifacts.BEST_METRICS, artifacts.HISTORY, checkpoints.INDEX_FILE} <= {p.name for p in kept.iterdir()}
    for name in ("alpha", "beta", "gamma"):
        assert best_weights.load_best_weights(tiny_runs / name / artifacts.BEST_WEIGHTS)["arch"] == "resnet18"
    tune_bytes = folder_size(tiny_runs / artifacts.TUNE_DIR)
    assert tune_bytes < 2 * 2**20, f"{tune_bytes} bytes in {artifacts.TUNE_DIR}/ for three pruned trials"


def test_a_finished_and_pruned_trial_restored_again_is_recognised_by_its_final_checkpoint(tiny_runs, two_checkpoints):
    """A driver killed after a trial was published and pruned, but before Tune's record of its end
    reached the storage, restores it once more: the trainable then reports its last epoch again
    (train._train) instead of failing on the missing state.pt."""
    for trial_dir in [p for p in (tiny_runs / artifacts.TUNE_DIR).glob("*/*") if (p / "result.json").is_file()]:
        [kept] = trial_dir.glob("checkpoint_*")
        history = checkpoints.finished_history(tune.Checkpoint.from_directory(str(kept)))
        name = artifacts.read_json(trial_dir / "params.json")[EXPERIMENT_KEY]["name"]
        assert history == artifacts.read_json(tiny_runs / name / artifacts.HISTORY)
        # Tune's record may name an older folder, deleted by the prune: the final one is found beside it
        older = kept.with_name("checkpoint_000000") if kept.name != "checkpoint_000000" else None
        if older is not None:
            assert checkpoints.finished_history(tune.Checkpoint.from_directory(str(older))) == history
    _, _, folders, _, _ = two_checkpoints
    for folder in folders:  # mid-training, with a state to continue from
        assert checkpoints.finished_history(tune.Checkpoint.from_directory(str(folder))) is None


def test_a_trial_the_scheduler_stopped_is_recognised_as_finished_once_pruned(two_checkpoints, tmp_path):
    """ASHA stops a trial on a checkpoint that is not final. Once published and pruned, a restore
    (the driver killed before Tune recorded the trial's end) must replay it, not fail for want of
    the best.pt that the prune deleted with the older folder."""
    _, _, folders, _, _ = two_checkpoints
    trial_dir = tmp_path / "trial"
    shutil.copytree(folders[0].parent, trial_dir)
    older, latest = (tune.Checkpoint.from_directory(str(trial_dir / f.name)) for f in folders)
    assert checkpoints.finished_history(latest) is None, "before the prune it has a state to continue from"
    checkpoints.prune_published(latest)
    assert sorted(p.name for p in trial_dir.iterdir()) == [folders[1].name], "only the latest folder is kept"
    assert not list(trial_dir.rglob("*.pt")) and not list(trial_dir.rglob("*.tmp"))
    assert artifacts.read_json(trial_dir / folders[1].name / checkpoints.INDEX_FILE)["published"] is True
    # Tune's record may still name the older folder, deleted by the prune
    for checkpoint in (latest, older):
        assert [h["epoch"] for h in checkpoints.finished_history(checkpoint)] == [1, 2]
    assert checkpoints.prune_published(latest) == 0, "pruning again finds nothing left to free"


def test_a_final_checkpoint_not_yet_pruned_is_finished_too(two_checkpoints, tmp_path):
    """A driver killed before it published or pruned a finished trial restores the trial from its
    final checkpoint, state.pt and all. The trial must replay its end, not train on: one that patience
    stopped has epochs left in training.epochs."""
    trial, state, folders, _, _ = two_checkpoints
    trial_dir = tmp_path / "trial"
    shutil.copytree(folders[0].parent, trial_dir)
    final = trial_dir / "checkpoint_000002"
    final.mkdir()
    trial.write_checkpoint(final, state, final=True)
    assert (final / STATE_FILE).is_file()
    assert [h["epoch"] for h in checkpoints.finished_history(tune.Checkpoint.from_directory(str(final)))] == [1, 2]
