"""`raytrain submit`: run a raytrain command on a Ray cluster as a Ray Job, and follow it.

The project folder is the job's working directory (Ray uploads it, honouring .gitignore), so the
cluster runs this checkout's code. That folder is temporary, so a command that writes results must
name a durable --runs-dir. Owns that check, the code state handed to the job, retries of the submission
and the log stream; nothing else.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
import time
from pathlib import Path

from raytrain.errors import UserError
from raytrain.provenance import handed_on_env
from raytrain.sweeps import storage as tune_storage

SUBMIT_ATTEMPTS = 3  # job submission fails transiently now and then (2 of 10 in docs/ray-notes.md)
FINAL_STATES = {"SUCCEEDED": 0, "FAILED": 1, "STOPPED": 130}
WRITING_VERBS = ("sweep", "run", "resume", "demo")  # the verbs that leave results on the head


def submit(address: str, command: list[str], *, follow: bool = True, working_dir: Path | None = None) -> int:
    from ray.job_submission import JobSubmissionClient

    if not command:
        raise UserError(
            "submit: nothing to run; e.g. raytrain submit --address http://HEAD:8265 -- sweep --data-root /data/fer"
        )
    runs_dir = durable_runs_dir(command)
    check_storage_option(command)
    if command[0] == "sweep" and not {"--yes", "-y"} & set(command):
        command = [*command, "--yes"]  # a job has no terminal to confirm on
    if Path.home().joinpath(".ray/auth_token").is_file():
        os.environ.setdefault("RAY_AUTH_MODE", "token")  # Ray 2.60's default; the client must say so
    entrypoint = shlex.join(["python", "-m", "raytrain", *command])
    runtime_env = job_runtime_env(working_dir or Path.cwd())
    client, job_id = None, None
    for attempt in range(1, SUBMIT_ATTEMPTS + 1):
        try:
            client = JobSubmissionClient(address)
            job_id = client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env)
            break
        except Exception as err:  # connection and server errors come as several types
            if attempt == SUBMIT_ATTEMPTS:
                raise UserError(
                    f"submit: {address}: could not submit after {attempt} tries ({type(err).__name__}: {err}); "
                    "check the address (the dashboard port, e.g. http://HEAD:8265) and RAY_AUTH_MODE=token with the "
                    "cluster's token"
                ) from None
            print(f"submit: attempt {attempt} failed ({type(err).__name__}); retrying", file=sys.stderr)
            time.sleep(2 * attempt)
    print(f"submitted job {job_id}: {entrypoint}", flush=True)
    where = (
        f"; results in {runs_dir} on the cluster's head node (cluster/README.md: getting results back)"
        if runs_dir
        else ""
    )
    if not follow:
        print(f"follow it with `ray job logs -f {job_id} --address {address}`{where}")
        return 0
    asyncio.run(_print_logs(client, job_id))
    status = _final_status(client, job_id)
    print(f"job {job_id}: {status}{where}")
    return FINAL_STATES.get(status, 1)


def durable_runs_dir(command: list[str]) -> str | None:
    """The absolute --runs-dir of a command that writes results, None for one that writes none.

    A relative or default runs/ would resolve inside the job's working directory: a temporary
    upload on the head node that Ray deletes with the job, results and all."""
    if command[0] not in WRITING_VERBS:
        return None
    option = "--out" if command[0] == "demo" else "--runs-dir"
    value = _option_value(command, option)
    if value is None or not value.startswith("/"):
        given = (
            f"{option} {value}"
            if value
            else f"no {option} (default {'raytrain-demo' if command[0] == 'demo' else 'runs'}/)"
        )
        raise UserError(
            f"submit: {command[0]}: {given} would put the results in the job's temporary working directory on "
            f"the head node, which Ray deletes with the job. Give {option} an absolute path on the head node's "
            f"disk or on a mount every node shares, e.g. {option} /mnt/shared/raytrain/runs "
            "(cluster/README.md says how to copy them back)"
        )
    return value


def check_storage_option(command: list[str]) -> None:
    """A malformed --storage URI fails here, before the upload. The bucket itself is checked by the
    job on the cluster, whose nodes may hold credentials (an instance profile) this machine lacks."""
    storage = _option_value(command, "--storage")
    if storage is None:
        return
    if tune_storage.is_remote(storage):
        tune_storage.open_uri(storage)
    elif not storage.startswith("/"):
        raise UserError(
            f"submit: --storage {storage} would put the Tune experiment in the job's temporary working directory "
            "on the head node, which Ray deletes with the job; give an absolute path every node mounts, or s3://BUCKET/PREFIX"
        )


def _option_value(command: list[str], option: str) -> str | None:
    for i, word in enumerate(command):
        if word == option and i + 1 < len(command):
            return command[i + 1]
        if word.startswith(option + "="):
            return word.split("=", 1)[1]
    return None


def job_runtime_env(working_dir: Path) -> dict:
    """The upload, and the code state it was made from (commit, dirty, diff): the upload has no .git
    to ask later."""
    env = {"working_dir": str(working_dir)}
    handed_on = handed_on_env(working_dir)
    if handed_on:
        env["env_vars"] = handed_on
    return env


async def _print_logs(client, job_id: str) -> None:
    async for lines in client.tail_job_logs(job_id):
        print(lines, end="", flush=True)


def _final_status(client, job_id: str) -> str:
    while (status := str(client.get_job_status(job_id)).split(".")[-1]) not in FINAL_STATES:
        time.sleep(0.5)  # the log stream can end a moment before the status turns final
    return status
