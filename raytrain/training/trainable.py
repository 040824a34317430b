"""The Ray Tune trainable: one experiment, one trial, and the checkpoint files it writes.

validate config -> build data, model, optimiser -> restore from a checkpoint if there is one -> for
each epoch: train, evaluate, report (with a checkpoint when one is due). The loop itself is plain
torch (loop.py); this module owns the checkpoint files and when a trial is finished; naming.py the
metric keys Tune sees and sweeps/policy.py the stopper (both imported by the driver without torch).

A checkpoint holds ONE copy of the model and optimiser state: state.pt, plus best.pt only where the
best epoch changed since the previous checkpoint. When the best epoch is the checkpoint's own epoch,
state.pt leaves the model out (best.pt has it); a checkpoint whose best epoch is older refers to the
earlier best.pt (checkpoints.py finds it). A trial's last checkpoint (`final`) holds no optimiser:
it is never continued. A population member's (pbt) every checkpoint holds its best.pt
(training/population.py says why).
"""

from __future__ import annotations

import io
import os
import pickle
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import ray
import torch
from ray import tune

from raytrain import artifacts, lineage, trace
from raytrain.config import ExperimentConfig, validate_config
from raytrain.data import FERDataset, class_weights, sampler_weights
from raytrain.data.cache import default_cache_dir
from raytrain.errors import DamagedCheckpoint, OutOfGPUMemory
from raytrain.naming import CHECKPOINT_RANK, EXPERIMENT_KEY, REPLAYED, first_line
from raytrain.training import best_weights, checkpoints, reuse
from raytrain.training.augment import BatchAugmenter
from raytrain.training.checkpoints import CheckpointCadence, checkpoint_rank
from raytrain.training.loop import TensorSplit, evaluate, steps_per_epoch, train_one_epoch
from raytrain.training.losses import build_loss
from raytrain.training.machine import machine_provenance
from raytrain.training.metrics import metrics_artifact
from raytrain.training.models import build_model, set_backbone_trainable
from raytrain.training.numerics import compile_model, memory_format, pick_device, resolve_precision
from raytrain.training.optim import build_optimizer, build_scheduler
from raytrain.training.population import Member, config_knobs_win, number_checkpoints_past_existing

STATE_FILE = checkpoints.STATE_FILE  # the training state to continue from
# What state.pt's numpy arrays (the best epoch's confusion matrix and probabilities) unpickle with:
# numpy's own array and scalar rebuilding and its dtype classes, which make arrays and run nothing else
NUMPY_ARRAY_GLOBALS = [
    np.ndarray,
    np.dtype,
    np._core.multiarray._reconstruct,
    np._core.multiarray.scalar,
    *(getattr(np.dtypes, name) for name in np.dtypes.__all__),
]
# torch.compile's backend for training.compile: true. inductor generates fused kernels; aot_eager
# traces the same graphs without code generation (to tell a tracing problem from a codegen one, and
# for tests, where inductor's C++ build of resnet18 takes minutes on 2 cores)
COMPILE_BACKEND_ENV = "RAYTRAIN_COMPILE_BACKEND"


@dataclass
class TrainState:
    """Everything besides the torch objects that a restored trial needs to continue exactly."""

    epoch: int = 0  # last finished epoch
    best_val_macro_f1: float = -1.0
    best_epoch: int = 0
    epochs_since_best: int = 0
    history: list[dict] = field(default_factory=list)
    best_saved_epoch: int = 0  # the best epoch whose weights some checkpoint's best.pt holds; 0: none


def train_experiment(config: dict, dataset: FERDataset, decision_epochs: tuple[int, ...] = ()) -> None:
    """Tune function trainable. `dataset` arrives through tune.with_parameters (the object store), as
    do `decision_epochs`: where the sweep's scheduler may stop the trial, each saved whatever the cadence."""
    experiment = config[EXPERIMENT_KEY]
    cfg = validate_config(experiment, source=f"trial config of {experiment.get('name', '?')}")
    reuse.start_trial(cfg)  # this process may have run another trial just before
    member = Member.of(config, tune.get_context().get_trial_id())  # None outside pbt/pb2
    try:
        _train(cfg, dataset, decision_epochs, member)
    except torch.cuda.OutOfMemoryError as err:  # torch's own message names bytes, not the knobs to turn
        raise OutOfGPUMemory(out_of_memory_message(cfg)) from err


def _train(
    cfg: ExperimentConfig, dataset: FERDataset, decision_epochs: tuple[int, ...], member: Member | None = None
) -> None:
    context = tune.get_context()
    staging = staging_folder(context.get_experiment_name(), context.get_trial_id())
    shutil.rmtree(staging, ignore_errors=True)  # left by this trial's earlier process, killed in tune.report
    checkpoint = tune.get_checkpoint()
    # a population member that copies another's checkpoint continues it, whatever that one's state
    copying = member is not None and checkpoint is not None and member.copies(checkpoint)
    finished = checkpoints.finished_history(checkpoint) if checkpoint is not None and not copying else None
    if finished:
        # already trained and published to runs/ (its weights are there, pruned here): Tune only
        # needs the end of it again, so it can record the trial as finished
        tune.report({**finished[-1], CHECKPOINT_RANK: _rank_of_finished(finished[-1]), REPLAYED: True})
        return
    if member is not None:
        number_checkpoints_past_existing()  # pbt stops members without registering their last checkpoint
    trial = TrainingRun(cfg, dataset, member=member)
    state = trial.restore(checkpoint) or TrainState()
    cadence = CheckpointCadence(cfg.other.checkpoint_epochs, cfg.other.checkpoint_minutes, also_at=decision_epochs)
    cadence.saved(state.epoch)
    trace.mark("training_starts", trial=cfg.name, epoch=state.epoch + 1, copying=copying)
    for epoch in range(state.epoch + 1, cfg.training.epochs + 1):
        metrics = trial.run_epoch(epoch, state)
        if member is not None:
            metrics.update(member.epoch_record())  # the same dict as the epoch's history row
        # the trial ends here either way: the stopper reads the same epochs_since_best
        final = epoch == cfg.training.epochs or state.epochs_since_best >= cfg.other.patience
        if not (final or cadence.due(epoch) or (member is not None and member.perturbs_at(epoch))):
            # no state saved: a crash now goes back to the last checkpoint
            tune.report({**metrics, CHECKPOINT_RANK: _rank(state, holds=False)})
            continue
        with staged(staging) as folder:
            holds = trial.write_checkpoint(folder, state, final=final)
            written = sum(f.stat().st_size for f in folder.iterdir())
            trace.mark("checkpoint_written", trial=cfg.name, epoch=epoch, bytes=written, final=final)
            rank = member.rank(epoch) if member is not None else _rank(state, holds=holds)
            tune.report({**metrics, CHECKPOINT_RANK: rank}, checkpoint=tune.Checkpoint.from_directory(str(folder)))
        cadence.saved(epoch)


def staging_folder(experiment: str, trial_id: str) -> Path:
    """Where a trial writes a checkpoint before tune.report copies it to the storage. Named after the
    trial, not random: after the copy, tune.report waits for the driver, and a trial killed there (a
    kill -9, a lost driver) cannot remove it; restored on the same node, the trial clears it (_train)."""
    return Path(tempfile.gettempdir()) / f"raytrain-checkpoint-{experiment}-{trial_id}"


@contextmanager
def staged(folder: Path) -> Iterator[Path]:
    """`folder`, empty, for one checkpoint; removed once tune.report has copied it."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(mode=0o700)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _rank_of_finished(last: dict) -> float:
    return checkpoint_rank(int(last["best_epoch"]), holds_best_weights=False)


def _rank(state: TrainState, *, holds: bool) -> float:
    return checkpoint_rank(state.best_saved_epoch, holds_best_weights=holds)


def out_of_memory_message(cfg: ExperimentConfig) -> str:
    share = cfg.resources.gpu
    packed = (
        f"{share:g} GPU per trial, so up to {int(1 / share)} trials share one GPU"
        if share and share < 1
        else "a whole GPU"
    )
    return (
        f"{cfg.name}: out of GPU memory at training.batch_size {cfg.training.batch_size}, data.img_size "
        f"{cfg.data.img_size}, {cfg.model.arch} with {packed}: lower training.batch_size (or "
        "eval_batch_size, data.img_size), or give each trial a larger share (--gpus-per-trial / "
        "resources.gpu) so fewer trials share a GPU"
    )


class TrainingRun:
    """The torch objects of one trial, built from its config and the shared dataset."""

    def __init__(self, cfg: ExperimentConfig, dataset: FERDataset, *, member: Member | None = None):
        self.cfg = cfg
        self.member = member  # a population member (pbt/pb2): training/population.py
        self.node_id = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
        self.device = pick_device(cfg.resources.gpu)
        torch.set_num_threads(max(1, int(cfg.resources.cpu)))
        # after the threads are set: on a CPU "auto" times bf16 against fp32 at this thread count
        self.precision = resolve_precision(cfg.training.precision, self.device, default_cache_dir())
        self.machine = machine_provenance(self.device, self.precision)  # for provenance.json
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick the fastest kernels
        self.class_names = list(dataset.class_names)
        self.splits = {name: self._to_device(split) for name, split in dataset.splits.items()}
        train_labels = dataset.splits["train"].labels
        num_classes = len(self.class_names)
        layout = memory_format(self.device, self.precision)  # the model's and its inputs'
        self.augmenter = BatchAugmenter(
            cfg.augmentation, cfg.data.img_size, dataset.channels, num_classes, self.device, memory_format=layout
        )
        self.sample_weights = (
            torch.as_tensor(sampler_weights(train_labels, num_classes), device=self.device)
            if cfg.data.weighted_sampler
            else None
        )
        weights = torch.as_tensor(class_weights(train_labels, num_classes), dtype=torch.float32, device=self.device)
        self.loss_fn = build_loss(cfg.loss, weights)
        torch.manual_seed(cfg.other.seed)  # the model's initial weights
        self.model = build_model(
            cfg.model.arch, num_classes, dataset.channels, cfg.model.dropout, cfg.model.pretrained
        ).to(self.device, memory_format=layout)
        # the compiled module shares its parameters with self.model, whose state_dict keeps plain
        # names (no "_orig_mod." prefix) so checkpoints and best.pt load with or without compile
        self.forward_model = (
            compile_model(self.model, cpus=cfg.resources.cpu, backend=os.environ.get(COMPILE_BACKEND_ENV, "inductor"))
            if cfg.training.compile
            else self.model
        )
        self.optimizer = build_optimizer(self.model, cfg.training)
        self.steps = steps_per_epoch(len(self.splits["train"]), cfg.training.batch_size)
        self.scheduler = build_scheduler(self.optimizer, cfg.training, self.steps)
        self.best_weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.best_val: dict = {}

    def _to_device(self, split) -> TensorSplit:
        with warnings.catch_warnings():
            # the object store hands out read-only arrays; nothing here writes to them in place
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            images = torch.from_numpy(split.images)
            labels = torch.from_numpy(split.labels).long()
            targets = torch.from_numpy(split.targets).float().to(self.device) if split.targets is not None else None
        return TensorSplit(images.to(self.device), labels.to(self.device), targets)

    def train_epoch(self, generator: torch.Generator) -> dict:
        """One pass over the train split with this trial's model, optimiser and augmentation: the part
        of run_epoch that trains (bench_vs_seed times it alone)."""
        return train_one_epoch(
            self.forward_model,
            self.splits["train"],
            augmenter=self.augmenter,
            loss_fn=self.loss_fn,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            batch_size=self.cfg.training.batch_size,
            generator=generator,
            sample_weights=self.sample_weights,
            precision=self.precision,
        )

    def run_epoch(self, epoch: int, state: TrainState) -> dict:
        cfg = self.cfg
        start = time.perf_counter()
        # seed from (seed, epoch): a restored trial draws exactly what the uninterrupted one drew
        epoch_seed = cfg.other.seed * 100_003 + epoch
        torch.manual_seed(epoch_seed)  # dropout
        generator = torch.Generator(device=self.device).manual_seed(epoch_seed)
        set_backbone_trainable(self.model, epoch > cfg.training.freeze_epochs)
        train = self.train_epoch(generator)
        lr = self.scheduler.get_last_lr()[0]
        if not np.isfinite(train["loss"]):
            raise FloatingPointError(
                f"epoch {epoch}: train loss is {train['loss']} at lr {lr:.3g}; lower training.lr or check the data"
            )
        val, confusion, probabilities = self._evaluate("val")
        state.epoch = epoch
        if val["macro_f1"] > state.best_val_macro_f1:
            state.best_val_macro_f1, state.best_epoch, state.epochs_since_best = val["macro_f1"], epoch, 0
            self.best_weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            self.best_val = {"metrics": val, "confusion": confusion, "probabilities": probabilities.numpy()}
        else:
            state.epochs_since_best += 1
        metrics = {
            "epoch": epoch,
            "train/loss": train["loss"],
            "train/accuracy": train["accuracy"],
            **{f"val/{k}": v for k, v in val.items() if not k.startswith("support/")},
            "lr": lr,
            "epoch_time_s": time.perf_counter() - start,
            "train/images_per_s": train["images"] / train["seconds"],
            "precision_used": self.precision,  # what training.precision "auto" resolved to on this device
            "epochs_since_best": state.epochs_since_best,
            "best_epoch": state.best_epoch,
            "best/val/macro_f1": state.best_val_macro_f1,
            "node_id": self.node_id,  # the driver's log says where each trial ran
        }
        state.history.append(metrics)
        return metrics

    # --- checkpoints --------------------------------------------------------------------------------

    def write_checkpoint(self, folder: Path, state: TrainState, *, final: bool) -> bool:
        """state.pt (to continue), best.pt if the best epoch changed since the last checkpoint, and
        the seed's small artifacts as of now; on the final epoch, test too. Returns whether this
        checkpoint holds best.pt."""
        # a population member's checkpoint may be copied after the member moved on: it holds its own
        holds_best = state.best_epoch != state.best_saved_epoch or self.member is not None
        # the model as of now IS the best: best.pt carries it and state.pt leaves it out
        model_in_best = holds_best and state.best_epoch == state.epoch
        if holds_best:
            config = self.member.config_at(state.history, state.best_epoch) if self.member else None
            self._save_best_weights(folder / artifacts.BEST_WEIGHTS, state.best_epoch, config)
            state.best_saved_epoch = state.best_epoch
        # a finished trial is never continued (a restore replays its end: checkpoints.finished_history),
        # so its last checkpoint leaves out what only continuing needs: with Adam, three copies of
        # the weights written, copied to the storage and deleted again, for every trial
        continuable = not final
        torch.save(
            {
                "model": self.model.state_dict() if continuable and not model_in_best else None,
                "optimizer": self.optimizer.state_dict() if continuable else None,
                "scheduler": self.scheduler.state_dict() if continuable else None,
                "best_val": self.best_val,
                "state": asdict(state),
            },
            folder / STATE_FILE,
        )
        artifacts.write_json(
            folder / checkpoints.INDEX_FILE,
            checkpoints.index(
                epoch=state.epoch, best_epoch=state.best_epoch, holds_best_weights=holds_best, final=final
            ),
        )
        best = self.best_val["metrics"]
        artifacts.write_json(
            folder / artifacts.BEST_METRICS,
            metrics_artifact(
                best, epoch=state.best_epoch, split="val", loss=best["loss"], class_names=self.class_names
            ),
        )
        artifacts.write_npy(folder / artifacts.BEST_CONFUSION, self.best_val["confusion"])
        artifacts.write_predictions(
            folder / artifacts.VAL_PREDICTIONS, self.splits["val"].labels.cpu().numpy(), self.best_val["probabilities"]
        )
        artifacts.write_json(folder / artifacts.HISTORY, state.history)
        # the machine part of provenance.json: the driver, maybe on another machine, adds the rest
        artifacts.write_json(folder / artifacts.PROVENANCE, {"machine": self.machine})
        if self.member is not None:
            artifacts.write_text(folder / artifacts.SCHEDULE, lineage.schedule_csv(state.history))
        if final and "test" in self.splits:
            self._evaluate_test(folder, state.best_epoch)
        return holds_best

    def _save_best_weights(self, path: Path, epoch: int, config: dict | None = None) -> None:
        """`config`: what the weights were trained with, where the knobs changed mid-run (pbt)."""
        best_weights.save_best_weights(
            path,
            self.best_weights,
            arch=self.cfg.model.arch,
            class_names=self.class_names,
            in_channels=self.augmenter.channels,
            img_size=self.cfg.data.img_size,
            mean=self.augmenter.mean,
            std=self.augmenter.std,
            config=config or self.cfg.model_dump(mode="json"),
            epoch=epoch,
        )

    def _evaluate_test(self, folder: Path, best_epoch: int) -> None:
        """The best weights, evaluated once on test. Never reported to Tune: test is not for selection."""
        latest = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.model.load_state_dict(self.best_weights)
        test, confusion, probabilities = self._evaluate("test")
        self.model.load_state_dict(latest)
        artifacts.write_predictions(
            folder / artifacts.TEST_PREDICTIONS, self.splits["test"].labels.cpu().numpy(), probabilities.numpy()
        )
        artifacts.write_json(
            folder / artifacts.TEST_METRICS,
            metrics_artifact(test, epoch=best_epoch, split="test", loss=test["loss"], class_names=self.class_names),
        )
        artifacts.write_npy(folder / artifacts.TEST_CONFUSION, confusion)

    def _evaluate(self, split: str) -> tuple[dict, np.ndarray, torch.Tensor]:
        return evaluate(
            self.forward_model,
            self.splits[split],
            augmenter=self.augmenter,
            class_names=self.class_names,
            batch_size=self.cfg.training.eval_batch_size,
            precision=self.precision,
            fixed_batch=self.cfg.training.compile,  # one eval shape: no recompile for a short last batch
        )

    def restore(self, checkpoint: tune.Checkpoint | None) -> TrainState | None:
        """The trial as of its checkpoint. Should that one be gone or broken (a kill -9 can leave
        Tune's record older than the files: it may name a folder it had already deleted), the
        newest of the trial's other checkpoints that is whole; never a silent start from scratch."""
        if checkpoint is None:
            return None
        given = checkpoints.Location.of(checkpoint)
        problems = []
        for location in [given, *(s for s in given.siblings() if s.path != given.path)]:
            try:
                return self._restore_from(location)
            except pickle.UnpicklingError:  # weights_only met a global it does not allow: code, maybe planted
                problems.append(
                    f"{location.path}/{STATE_FILE}: holds more than the tensors and numbers raytrain writes; refused, "
                    "not run"
                )
            except (OSError, RuntimeError, KeyError, EOFError, ValueError) as err:  # a torn file: RuntimeError
                problems.append(f"{location.path}: {first_line(err, 200, typed=True)}")
        raise DamagedCheckpoint(
            "no checkpoint of this trial can be restored (" + "; ".join(problems) + "); run its config again"
        )

    def _restore_from(self, location: checkpoints.Location) -> TrainState:
        holder = checkpoints.best_weights_holder(location)
        if holder is None:
            raise FileNotFoundError(f"no checkpoint holds the {artifacts.BEST_WEIGHTS} it refers to")
        # weights_only: tensors, plain values and numpy arrays only. The storage is data, not code: a
        # state.pt that holds anything else is refused, never run (docs/trust.md). Loaded on the CPU:
        # load_state_dict puts each tensor where it belongs, and the optimiser keeps Adam's step
        # counters on the host. Mapped to CUDA they stay there, and Adam reads each back with .item()
        # at every step: two host syncs per parameter (124 per step for resnet18)
        with torch.serialization.safe_globals(NUMPY_ARRAY_GLOBALS):
            saved = torch.load(io.BytesIO(location.read_bytes(STATE_FILE)), map_location="cpu", weights_only=True)
        best = torch.load(io.BytesIO(holder.read_bytes(artifacts.BEST_WEIGHTS)), map_location="cpu", weights_only=True)
        if saved["optimizer"] is None:
            raise ValueError("the last checkpoint of a finished trial holds nothing to continue from")
        state = TrainState(**saved["state"])
        self.best_weights = {k: v.to(self.device) for k, v in best["state_dict"].items()}
        # None: the checkpoint's own epoch was the best, and best.pt holds the model
        self.model.load_state_dict(saved["model"] if saved["model"] is not None else self.best_weights)
        if self.member is None:
            self.optimizer.load_state_dict(saved["optimizer"])
            self.scheduler.load_state_dict(saved["scheduler"])
        else:
            with config_knobs_win(self.optimizer, self.scheduler):  # pbt's new values, from this epoch on
                self.optimizer.load_state_dict(saved["optimizer"])
                self.scheduler.load_state_dict(saved["scheduler"])
        self.best_val = saved["best_val"]
        if "best_saved_epoch" not in saved["state"]:  # written before it was kept: every checkpoint held best.pt
            state.best_saved_epoch = state.best_epoch
        return state
