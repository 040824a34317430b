"""A benchmark's scratch folder: the one it was given (kept), or a new temporary one, removed at the
end unless asked to keep it. Imported by the benchmarks beside it (run as scripts, this folder is
first on sys.path)."""

from __future__ import annotations

import shutil
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
