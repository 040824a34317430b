"""A benchmark's scratch folder: the one it was given (kept), or a new temporary one, removed at the
end unless asked to keep it; and synthetic data in it, decoded once into the folder's own cache.
Imported by the benchmarks beside it (run as scripts, this folder is first on sys.path)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def scratch_folder(prefix: str, *, keep: bool = False, given: Path | None = None) -> Iterator[Path]:
    if given is not None:  # --work: the user's folder, kept so a later run can reuse what is there
        given.mkdir(parents=True, exist_ok=True)
        yield given
        return
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield folder
    finally:
        if keep:
            print(f"(files kept under {folder})")
        else:
            shutil.rmtree(folder, ignore_errors=True)


def synthetic_data(folder: Path, *, size: int, per_class: int, env: dict) -> Path:
    """`raytrain data synth` into folder, then `raytrain data check` to fill env's dataset cache, as
    a user's first command would: the benchmark then measures sweeps, not the first decode."""
    raytrain = [sys.executable, "-m", "raytrain"]
    synth = ["data", "synth", str(folder), "--size", str(size), "--per-class", str(per_class)]
    subprocess.run([*raytrain, *synth], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run([*raytrain, "data", "check", str(folder)], env=env, stdout=subprocess.DEVNULL)
    return folder
