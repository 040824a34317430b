"""The Ray Tune trainable: one experiment, one trial. Also its stopper and checkpoint policy.

validate config -> build data, model, optimiser -> restore from a checkpoint if there is one -> for
each epoch: train, evaluate, report with a checkpoint. The loop itself is plain torch (loop.py); this
module owns what Tune sees: the metric names, the checkpoint files and when a trial is finished.
"""

from __future__ import annotations

import os
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import ray
import torch
from ray import tune

from raytrain import artifacts
from raytrain.config import ExperimentConfig, validate_config
from raytrain.data import BatchAugmenter, FERDataset, class_weights, sampler_weights
from raytrain.data.datasets import default_cache_dir
from raytrain.loop import TensorSplit, evaluate, steps_per_epoch, train_one_epoch
from raytrain.losses import build_loss
from raytrain.metrics import metrics_artifact
from raytrain.models import build_model, set_backbone_trainable
from raytrain.numerics import resolve_precision, use_channels_last
from raytrain.optim import build_optimizer, build_scheduler

METRIC, MODE = "val/macro_f1", "max"  # what "best" means everywhere: checkpoints, results, reports
STATE_FILE = "state.pt"  # the latest training state; best.pt beside it holds the best weights
# A trial's Tune config is {"experiment": <resolved config dict>}: one grid over whole experiments
# puts every config of a sweep into one Tuner, whatever keys each one changes.
EXPERIMENT_KEY = "experiment"
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


def train_experiment(config: dict, dataset: FERDataset) -> None:
    """Tune function trainable. `dataset` arrives through tune.with_parameters (the object store)."""
    experiment = config[EXPERIMENT_KEY]
    cfg = validate_config(experiment, source=f"trial config of {experiment.get('name', '?')}")
    try:
        _train(cfg, dataset)
    except torch.cuda.OutOfMemoryError as err:  # torch's own message names bytes, not the knobs to turn
        raise OutOfGPUMemory(out_of_memory_message(cfg)) from err


def _train(cfg: ExperimentConfig, dataset: FERDataset) -> None:
    trial = Trial(cfg, dataset)
    state = trial.restore(tune.get_checkpoint()) or TrainState()
    for epoch in range(state.epoch + 1, cfg.training.epochs + 1):
        metrics = trial.run_epoch(epoch, state)
        # the trial ends here either way: the stopper reads the same epochs_since_best
        final = epoch == cfg.training.epochs or state.epochs_since_best >= cfg.other.patience
        with tempfile.TemporaryDirectory() as folder:
            trial.write_checkpoint(Path(folder), state, final=final)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))


class OutOfGPUMemory(RuntimeError):
    """A trial's batch does not fit in its share of the GPU; the message says what to change."""


def out_of_memory_message(cfg: ExperimentConfig) -> str:
    share = cfg.resources.gpu
    packed = f"{share:g} GPU per trial, so up to {int(1 / share)} trials share one GPU" if share and share < 1 else "a whole GPU"
    return (
        f"{cfg.name}: out of GPU memory at training.batch_size {cfg.training.batch_size}, data.img_size "
        f"{cfg.data.img_size}, {cfg.model.arch} with {packed}: lower training.batch_size (or "
        "eval_batch_size, data.img_size), or give each trial a larger share (--gpus-per-trial / "
        "resources.gpu) so fewer trials share a GPU"
    )


class PatienceStopper(tune.Stopper):
    """Stops a trial once `epochs_since_best` reaches that trial's own other.patience.

    A pure function of the result: the counter lives in the trainable and its checkpoint, so a
    restored sweep stops exactly where an uninterrupted one would (docs/ray-notes.md).
    """

    def __call__(self, trial_id: str, result: dict) -> bool:
        return result["epochs_since_best"] >= result["config"][EXPERIMENT_KEY]["other"]["patience"]

    def stop_all(self) -> bool:
        return False


def stopped_by_scheduler(experiment: dict, last_result: dict) -> bool:
    """Whether a finished trial was cut short by the scheduler (ASHA): the trainable ends on its own
    only at training.epochs or when patience runs out, so a trial that ended before both was stopped
    from outside. Such a trial is `pruned`; its last checkpoint is not final, so test is not evaluated."""
    epoch = last_result.get("epoch")
    if epoch is None:
        return False
    return epoch < experiment["training"]["epochs"] and last_result["epochs_since_best"] < experiment["other"]["patience"]


def checkpoint_config() -> tune.CheckpointConfig:
    # num_to_keep=1 with a score keeps the best checkpoint AND the latest one (Tune always keeps it)
    return tune.CheckpointConfig(num_to_keep=1, checkpoint_score_attribute=METRIC, checkpoint_score_order=MODE)


def pick_device() -> torch.device:
    # Ray hides GPUs a trial did not ask for (CUDA_VISIBLE_DEVICES), so "available" means "ours"
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Trial:
    """The torch objects of one trial, built from its config and the shared dataset."""

    def __init__(self, cfg: ExperimentConfig, dataset: FERDataset):
        self.cfg = cfg
        self.node_id = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
        self.device = pick_device()
        torch.set_num_threads(max(1, int(cfg.resources.cpu)))
        # after the threads are set: on a CPU "auto" times bf16 against fp32 at this thread count
        self.precision = resolve_precision(cfg.training.precision, self.device, default_cache_dir())
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick the fastest kernels
        self.class_names = list(dataset.class_names)
        self.splits = {name: self._to_device(split) for name, split in dataset.splits.items()}
        train_labels = dataset.splits["train"].labels
        num_classes = len(self.class_names)
        self.augmenter = BatchAugmenter(cfg.augmentation, cfg.data.img_size, dataset.channels, num_classes, self.device)
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
        ).to(self.device)
        if use_channels_last(self.device, self.precision):
            self.model = self.model.to(memory_format=torch.channels_last)
        # the compiled module shares its parameters with self.model, whose state_dict keeps plain
        # names (no "_orig_mod." prefix) so checkpoints and best.pt load with or without compile
        self.forward_model = (
            torch.compile(self.model, backend=os.environ.get(COMPILE_BACKEND_ENV, "inductor"))
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
        return TensorSplit(images.to(self.device), labels.to(self.device))

    def run_epoch(self, epoch: int, state: TrainState) -> dict:
        cfg = self.cfg
        start = time.perf_counter()
        # seed from (seed, epoch): a restored trial draws exactly what the uninterrupted one drew
        epoch_seed = cfg.other.seed * 100_003 + epoch
        torch.manual_seed(epoch_seed)  # dropout
        generator = torch.Generator(device=self.device).manual_seed(epoch_seed)
        set_backbone_trainable(self.model, epoch > cfg.training.freeze_epochs)
        train = train_one_epoch(
            self.forward_model, self.splits["train"], augmenter=self.augmenter, loss_fn=self.loss_fn,
            optimizer=self.optimizer, scheduler=self.scheduler, batch_size=cfg.training.batch_size,
            generator=generator, sample_weights=self.sample_weights, precision=self.precision,
        )
        lr = self.scheduler.get_last_lr()[0]
        if not np.isfinite(train["loss"]):
            raise FloatingPointError(
                f"epoch {epoch}: train loss is {train['loss']} at lr {lr:.3g}; "
                "lower training.lr or check the data"
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

    def write_checkpoint(self, folder: Path, state: TrainState, *, final: bool) -> None:
        """state.pt (to continue) and the seed's artifacts as of now; on the final epoch, test too."""
        torch.save(
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "best_val": self.best_val,
                "state": asdict(state),
            },
            folder / STATE_FILE,
        )
        self._save_best_weights(folder / artifacts.BEST_WEIGHTS, state.best_epoch)
        best = self.best_val["metrics"]
        artifacts.write_json(
            folder / artifacts.BEST_METRICS,
            metrics_artifact(best, epoch=state.best_epoch, split="val", loss=best["loss"], class_names=self.class_names),
        )
        artifacts.write_npy(folder / artifacts.BEST_CONFUSION, self.best_val["confusion"])
        artifacts.write_predictions(
            folder / artifacts.VAL_PREDICTIONS, self.splits["val"].labels.cpu().numpy(), self.best_val["probabilities"]
        )
        artifacts.write_json(folder / artifacts.HISTORY, state.history)
        if final and "test" in self.splits:
            self._evaluate_test(folder, state.best_epoch)

    def _save_best_weights(self, path: Path, epoch: int) -> None:
        artifacts.save_best_weights(
            path, self.best_weights, arch=self.cfg.model.arch, class_names=self.class_names,
            in_channels=self.augmenter.channels, img_size=self.cfg.data.img_size,
            mean=self.augmenter.mean, std=self.augmenter.std,
            config=self.cfg.model_dump(mode="json"), epoch=epoch,
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
            self.forward_model, self.splits[split], augmenter=self.augmenter, class_names=self.class_names,
            batch_size=self.cfg.training.eval_batch_size, precision=self.precision,
        )

    def restore(self, checkpoint: tune.Checkpoint | None) -> TrainState | None:
        if checkpoint is None:
            return None
        with checkpoint.as_directory() as folder:
            saved = torch.load(Path(folder) / STATE_FILE, map_location=self.device, weights_only=False)
            best = artifacts.load_best_weights(Path(folder) / artifacts.BEST_WEIGHTS)
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.best_weights = {k: v.to(self.device) for k, v in best["state_dict"].items()}
        self.best_val = saved["best_val"]
        return TrainState(**saved["state"])
