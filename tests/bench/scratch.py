"""A benchmark's scratch folder: a new temporary one, removed at the end unless asked to keep it.
Imported by the benchmarks beside it (run as scripts, this folder is first on sys.path)."""

from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def scratch_folder(prefix: str, *, keep: bool) -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield folder
    finally:
        if keep:
            print(f"(files kept under {folder})")
        else:
            shutil.rmtree(folder, ignore_errors=True)
