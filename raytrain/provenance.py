"""Which code, data and machine produced a result: the git commit recorded with every trial in
experiment_log.jsonl, the code part of runs/<experiment>/provenance.json (raytrain's version, the
commit, whether the tree was dirty, the uncommitted diff), and the record's columns in `results`.

Whose code: the git checkout of the working directory raytrain runs in (where `raytrain sweep` is
typed). A Ray Job runs an upload of that folder without its .git (docs/ray-notes.md), so `submit`
reads the commit, the dirty flag and the diff on the submitting machine and hands them to the job in
RAYTRAIN_GIT_COMMIT, RAYTRAIN_GIT_DIRTY and RAYTRAIN_GIT_DIFF. The data part is made by
data/fingerprint.py (numpy) and the machine part by the trial (training/machine.py, torch); this
module reads them as plain dicts. Standard library only.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

COMMIT_ENV_VAR = "RAYTRAIN_GIT_COMMIT"
DIRTY_ENV_VAR = "RAYTRAIN_GIT_DIRTY"  # "1" or "0"
DIFF_ENV_VAR = "RAYTRAIN_GIT_DIFF"  # the uncommitted diff, cut to MAX_ENV_PATCH_BYTES
MAX_PATCH_BYTES = 1_000_000  # uncommitted.patch is cut here (and says so): a diff is code, not data
# a Ray Job passes its environment through exec, which refuses one variable over 128 KiB on Linux
MAX_ENV_PATCH_BYTES = 100_000
FORMAT = 1  # provenance.json's "format": bump when a field changes meaning


def git_commit(folder: Path | None = None) -> str | None:
    """The commit the submitting machine passed on, else this checkout's HEAD, else None."""
    if os.environ.get(COMMIT_ENV_VAR):
        return os.environ[COMMIT_ENV_VAR]
    return checkout_commit(folder)


def checkout_commit(folder: Path | None = None) -> str | None:
    """HEAD of the git checkout at `folder` (default: the working directory), short form."""
    return _git(["rev-parse", "--short", "HEAD"], folder)


@dataclass(frozen=True)
class CodeState:
    """The code a sweep runs: the commit, whether the tree differs from it (None: unknown), the
    difference as a patch (None when clean or unknown), whether the patch was cut, and where the
    checkout is (or that the state was handed on by `submit`)."""

    commit: str | None
    dirty: bool | None
    patch: str | None
    patch_cut: bool
    checkout: str | None


def code_state(folder: Path | None = None) -> CodeState:
    """What git says of the checkout at `folder` (default: the working directory), or what the
    submitting machine handed on in the environment (a Ray Job's upload has no .git)."""
    if os.environ.get(COMMIT_ENV_VAR):
        dirty = {"1": True, "0": False}.get(os.environ.get(DIRTY_ENV_VAR, ""))
        patch = os.environ.get(DIFF_ENV_VAR) or None
        cut = patch is not None and _CUT_MARK in patch
        return CodeState(os.environ[COMMIT_ENV_VAR], dirty, patch, cut, "handed on by `raytrain submit`")
    commit = checkout_commit(folder)
    if commit is None:
        return CodeState(None, None, None, False, None)
    checkout = _git(["rev-parse", "--show-toplevel"], folder)
    status = _git(["status", "--porcelain", "--untracked-files=normal"], folder, strip=False)
    dirty = None if status is None else bool(status.strip())
    patch, cut = uncommitted_patch(folder, commit, checkout) if dirty else (None, False)
    return CodeState(commit, dirty, patch, cut, checkout)


_CUT_MARK = "# raytrain: cut at"


def uncommitted_patch(folder: Path | None, commit: str, checkout: str | None, limit: int = MAX_PATCH_BYTES):
    """(patch, cut): `git diff HEAD` (staged and unstaged changes to tracked files) and each untracked,
    unignored file as an added file, under a header naming the checkout and commit; at most `limit`
    bytes, with a line that says so when it was cut. `git apply` skips the header."""
    header = f"# raytrain: the uncommitted changes of {checkout or 'the working directory'} over commit {commit}\n"
    parts = [_git(["diff", "HEAD", "--no-color", "--no-ext-diff"], folder, strip=False) or ""]
    untracked = (_git(["ls-files", "--others", "--exclude-standard", "-z"], folder, strip=False) or "").split("\0")
    size = len(header) + len(parts[0])
    for name in filter(None, untracked):  # paths relative to `folder`, as git diff takes them
        if size > limit:
            break  # cut below: no need to read more
        if Path(folder or ".", name).stat().st_size > limit:
            parts.append(f"# raytrain: untracked {name} is over {limit} bytes; not included\n")
            continue
        # exit code 1 means "they differ", which an added file always does
        added = _git(["diff", "--no-index", "--no-color", "--", os.devnull, name], folder, strip=False, ok=(0, 1))
        if added:
            parts.append(added)
            size += len(added)
    patch = header + "".join(parts)
    if len(patch.encode()) <= limit:
        return patch, False
    kept = patch.encode()[:limit].decode(errors="ignore")
    kept = kept[: kept.rfind("\n") + 1]
    return kept + f"{_CUT_MARK} {limit} bytes; the rest of the changes is not here\n", True


def handed_on_env(folder: Path) -> dict[str, str]:
    """What `submit` puts in a Ray Job's environment so that the job, whose upload has no .git,
    records the code it runs: the commit, whether it was dirty, and the diff (cut to fit)."""
    state = code_state(folder)
    if state.commit is None:
        return {}
    env = {COMMIT_ENV_VAR: state.commit}
    if state.dirty is not None:
        env[DIRTY_ENV_VAR] = "1" if state.dirty else "0"
    if state.patch:
        patch = state.patch
        if len(patch.encode()) > MAX_ENV_PATCH_BYTES:
            kept = patch.encode()[:MAX_ENV_PATCH_BYTES].decode(errors="ignore")
            patch = (
                kept[: kept.rfind("\n") + 1]
                + f"{_CUT_MARK} {MAX_ENV_PATCH_BYTES} bytes to fit a Ray Job's environment\n"
            )
        env[DIFF_ENV_VAR] = patch
    return env


def code_provenance(state: CodeState, patch_file: str | None) -> dict:
    """The "code" part of provenance.json; `patch_file` names the file the patch is saved as."""
    from raytrain import __version__

    return {
        "raytrain": __version__,
        "git_commit": state.commit,
        "git_dirty": state.dirty,
        "checkout": state.checkout,
        "patch": patch_file if state.patch else None,
        "patch_cut": state.patch_cut,
    }


# ---------------------------------------------------------------------------------------------------
# provenance.json as columns of results.load: one name per field, read by compare and the report.

DATA_FINGERPRINT = "data_fingerprint"
# column -> (section, key) of provenance.json
COLUMNS = {
    DATA_FINGERPRINT: ("data", "fingerprint"),
    "data_layout": ("data", "layout"),
    "data_labels": ("data", "label_source"),
    "code_version": ("code", "raytrain"),
    "code_commit": ("code", "git_commit"),
    "code_dirty": ("code", "git_dirty"),
    "machine_device": ("machine", "device_name"),
    "machine_precision": ("machine", "precision"),
    "machine_python": ("machine", "python"),
    "machine_torch": ("machine", "torch"),
    "machine_torchvision": ("machine", "torchvision"),
    "machine_ray": ("machine", "ray"),
    "machine_cuda": ("machine", "cuda"),
    "machine_cudnn": ("machine", "cudnn"),
}
SHORT_FINGERPRINT = 8  # hex characters compare shows, as git shows a commit


def provenance_columns(record: dict) -> dict:
    """A provenance.json record as results columns; a section or field it lacks is left out."""
    columns = {}
    for column, (section, key) in COLUMNS.items():
        part = record.get(section)
        if isinstance(part, dict) and part.get(key) is not None:
            columns[column] = part[key]
    return columns


def _git(args: list[str], folder: Path | None, *, strip: bool = True, ok: tuple[int, ...] = (0,)) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], capture_output=True, encoding="utf-8", errors="replace", timeout=30, cwd=folder
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode not in ok:  # not a git checkout, or git too old for the question
        return None
    return (out.stdout.strip() or None) if strip else out.stdout
