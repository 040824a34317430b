"""Benchmark: `training.compile: true` in a real trial. What the first epoch costs (the graphs being
built, train and eval apart), the graphs built and recompiles in all, and the later epochs' train
images/s against the same trial without compile.

    python3 tests/bench/bench_compile.py                  # on a machine with a CUDA GPU (inductor)
    .venv/bin/python tests/bench/bench_compile.py --smoke   # tiny, on the CPU, aot_eager (no C++ builds)

A trial's graphs: one for training and one for evaluation (each built once), since evaluation pads its
last batch to the full batch size (loop.evaluate's fixed_batch). Dynamo logs the eval graph's build
as a recompile (the model's training flag changed); any other, or any after the first epoch, is a
defect, and its reason is printed.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from scratch import scratch_folder  # noqa: E402 (beside this file)

from raytrain.config import load_config  # noqa: E402
from raytrain.data import generate_synthetic, load_dataset  # noqa: E402
from raytrain.training.trainable import COMPILE_BACKEND_ENV, TrainingRun, TrainState  # noqa: E402

# (img_size, images per class, batch, eval batch, epochs, the trial's CPUs, backend)
GPU = dict(size=48, per_class=1200, batch=256, eval_batch=256, epochs=3, cpus=4, backend="inductor")
SMOKE = dict(size=24, per_class=6, batch=16, eval_batch=4, epochs=2, cpus=1, backend="aot_eager")


class Recompiles(logging.Handler):
    """Dynamo's recompile log (TORCH_LOGS=recompiles), kept as (epoch, reason) pairs."""

    LOGGER = "torch._dynamo.guards.__recompiles"

    def __init__(self):
        super().__init__()
        self.epoch, self.seen = 0, []

    def emit(self, record: logging.LogRecord) -> None:
        lines = record.getMessage().splitlines()
        self.seen.append((self.epoch, lines[-1].strip() if lines else "?"))


def timed_epochs(trial: TrainingRun, epochs: int, device: torch.device, recompiles: Recompiles) -> list[dict]:
    """Per epoch: train seconds and img/s, eval seconds (the val split)."""
    rows, state = [], TrainState()
    for epoch in range(1, epochs + 1):
        recompiles.epoch = epoch
        generator = torch.Generator(device=device).manual_seed(epoch)
        start = time.perf_counter()
        train = trial.train_epoch(generator)  # ends on a sync (it reads the loss back)
        train_s = time.perf_counter() - start
        start = time.perf_counter()
        trial._evaluate("val")  # ends on a sync too (the metrics)
        rows.append({"train_s": train_s, "img_s": train["images"] / train_s, "eval_s": time.perf_counter() - start})
        state.epoch = epoch
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny, on the CPU with aot_eager: so it cannot rot")
    args = parser.parse_args()
    device = torch.device("cpu" if args.smoke else "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        print("bench_compile: skipped, no CUDA device here (--smoke runs it tiny on the CPU)")
        return
    settings = SMOKE if args.smoke else GPU
    os.environ[COMPILE_BACKEND_ENV] = settings["backend"]
    from torch._dynamo.utils import counters

    torch._logging.set_logs(recompiles=True)
    recompiles = Recompiles()
    logging.getLogger(Recompiles.LOGGER).addHandler(recompiles)

    with scratch_folder("bench-compile-") as work:
        data = generate_synthetic(work / "data", size=48, per_class=settings["per_class"], seed=0)
        dataset = load_dataset(data, cache_dir=work / "cache", workers=min(8, os.cpu_count() or 1))
        val = len(dataset.splits["val"])
        print(
            f"compile: {settings['backend']}, {settings['size']} px, batch {settings['batch']}, val {val} images in "
            f"batches of {settings['eval_batch']} (last one {val % settings['eval_batch'] or settings['eval_batch']}), "
            f"{settings['cpus']} CPUs per trial, torch {torch.__version__}"
        )
        rows = {}
        for compiled in (True, False):
            cfg = load_config(
                ROOT / "configs/demo/baseline_small.yaml",
                [
                    f"data.img_size={settings['size']}",
                    f"training.batch_size={settings['batch']}",
                    f"training.eval_batch_size={settings['eval_batch']}",
                    f"training.epochs={settings['epochs']}",
                    f"training.compile={str(compiled).lower()}",
                    f"resources.cpu={settings['cpus']}",
                ],
            )
            counters.clear()
            trial = TrainingRun(cfg, dataset)
            if compiled:
                import torch._inductor.config as inductor_config

                print(f"compile threads: {inductor_config.compile_threads} (machine: {os.cpu_count()} CPUs)")
            rows[compiled] = timed_epochs(trial, settings["epochs"], device, recompiles)
            if compiled:
                graphs, frames = counters["stats"]["unique_graphs"], counters["frames"]["total"]
                seen = list(recompiles.seen)
        first, later = rows[True][0], rows[True][1:]
        eager = max(r["img_s"] for r in rows[False][1:])
        ours = max(r["img_s"] for r in later)
        print(f"first epoch: train {first['train_s']:.1f} s, eval {first['eval_s']:.1f} s (graphs built in these)")
        train_s, eval_s = min(r["train_s"] for r in later), min(r["eval_s"] for r in later)
        print(f"later epochs: train {train_s:.2f} s, eval {eval_s:.2f} s")
        late = [reason for epoch, reason in seen if epoch > 1]
        print(
            f"graphs: {graphs} built over {frames} frame compiles; recompiles: {len(seen)} in all, {len(late)} after "
            "the first epoch (expected 1 and 0: the eval graph's build)"
        )
        for epoch, reason in seen:
            print(f"  recompile in epoch {epoch}: {reason}")
        print(f"train img/s: compiled {ours:,.0f}, eager {eager:,.0f}, ratio {ours / eager:.2f}x")


if __name__ == "__main__":
    main()
