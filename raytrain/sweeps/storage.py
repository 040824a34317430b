"""Where a sweep's Tune experiment lives: a local folder, or a bucket URI (s3://, gs://) that every
node of a cluster reaches by itself.

Owns telling the two apart, joining names onto a URI, and checking a bucket before any training.
Ray Tune opens a URI with pyarrow.fs.FileSystem.from_uri on the driver and on every node, so this
module does the same: what passes here is what Tune will see. No Ray or torch import.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from raytrain.errors import UserError
from raytrain.naming import first_line

# what a user on AWS S3 or an S3-compatible store (MinIO, Ceph, R2) sets on the driver and every node;
# pyarrow reads them itself (docs/ray-notes.md)
S3_HINT = (
    "every node and the driver need credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or an instance "
    "profile) and, for an S3-compatible store such as MinIO, AWS_ENDPOINT_URL=http://HOST:PORT; see "
    "cluster/README.md, section 3"
)
WRITE_CHECK = ".raytrain-write-check"
CHECKPOINT_FOLDER = re.compile(r"checkpoint_(\d+)")


class StorageError(UserError):
    """--storage is not a URI pyarrow can open, or its bucket cannot be written from here."""


def is_remote(storage: str) -> bool:
    """A URI (s3://bucket/prefix) rather than a folder on this machine."""
    return "://" in storage


def join(storage: str, *names: str) -> str:
    """storage/names...; for a URI the names go into its path, before any ?query (endpoint_override=...)."""
    if not is_remote(storage):
        return str(Path(storage, *names))
    parts = urlsplit(storage)
    return urlunsplit(parts._replace(path="/".join([parts.path.rstrip("/"), *names])))


def open_uri(storage: str):
    """(pyarrow filesystem, path inside it) for a storage URI, as Tune will open it. No I/O: a
    malformed URI fails here, an unreachable endpoint only at the first read or write."""
    import pyarrow
    import pyarrow.fs

    try:
        filesystem, path = pyarrow.fs.FileSystem.from_uri(storage)
    except (pyarrow.ArrowInvalid, ValueError) as err:
        raise StorageError(
            f"--storage {storage}: not a storage URI pyarrow can open ({err}); use s3://BUCKET/PREFIX (or gs://...), "
            "or a folder every node mounts at the same path"
        ) from None
    if not path.strip("/"):
        raise StorageError(f"--storage {storage}: names no bucket; use s3://BUCKET/PREFIX")
    return filesystem, path


def check_reachable(storage: str) -> None:
    """Write and delete a small object under the URI, as Tune does when the sweep starts, so that a
    wrong bucket, endpoint or credentials stop the command with one message before Ray starts.
    An unreachable endpoint takes pyarrow's retries, about 10 s, to give up."""
    filesystem, path = open_uri(storage)
    probe = f"{path.rstrip('/')}/{WRITE_CHECK}.{uuid.uuid4().hex[:8]}"
    try:
        filesystem.create_dir(path)
        with filesystem.open_output_stream(probe) as stream:
            stream.write(b"x")
        filesystem.delete_file(probe)
    except OSError as err:
        raise StorageError(f"--storage {storage}: cannot write there ({first_line(err)}); {S3_HINT}") from None


def checkpoint_index(path: str) -> int | None:
    """checkpoint_000007 -> 7: Tune names a trial's checkpoint folders by a counter."""
    match = CHECKPOINT_FOLDER.fullmatch(path.rstrip("/").rsplit("/", 1)[-1])
    return int(match.group(1)) if match else None


def next_checkpoint(filesystem, trial_path: str, after: str) -> str | None:
    """The trial's first checkpoint folder on the storage numbered after `after`, or None."""
    import pyarrow.fs

    missing = checkpoint_index(after)
    if missing is None:
        return None
    entries = filesystem.get_file_info(pyarrow.fs.FileSelector(trial_path, allow_not_found=True))
    newer = sorted(
        (index, entry.path)
        for entry in entries
        if entry.type == pyarrow.fs.FileType.Directory
        and (index := checkpoint_index(entry.path)) is not None
        and index > missing
    )
    return newer[0][1] if newer else None


def newest_checkpoint(filesystem, trial_path: str) -> str | None:
    """The trial's highest-numbered checkpoint folder on the storage, or None."""
    import pyarrow.fs

    entries = filesystem.get_file_info(pyarrow.fs.FileSelector(trial_path, allow_not_found=True))
    numbered = [
        (index, entry.path)
        for entry in entries
        if entry.type == pyarrow.fs.FileType.Directory and (index := checkpoint_index(entry.path)) is not None
    ]
    return max(numbered)[1] if numbered else None


def trial_location(trial) -> str:
    """A Tune trial's folder as a user would type it: Tune keeps the path without its s3:// scheme."""
    filesystem = getattr(trial.storage, "storage_filesystem", None)
    scheme = getattr(filesystem, "type_name", "local")
    return trial.path if scheme == "local" else f"{scheme}://{trial.path}"
