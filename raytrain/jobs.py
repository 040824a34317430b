"""`raytrain submit`: run a raytrain command on a Ray cluster as a Ray Job, and follow it.

The project folder is the job's working directory (Ray uploads it, honouring .gitignore), so the
cluster runs this checkout's code. Owns retries of the submission and the log stream; nothing else.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
import time
from pathlib import Path

from raytrain.errors import UserError

SUBMIT_ATTEMPTS = 3  # job submission fails transiently now and then (2 of 10 in docs/ray-notes.md)
FINAL_STATES = {"SUCCEEDED": 0, "FAILED": 1, "STOPPED": 130}


def submit(address: str, command: list[str], *, follow: bool = True, working_dir: Path | None = None) -> int:
    from ray.job_submission import JobSubmissionClient

    if not command:
        raise UserError("submit: nothing to run; e.g. raytrain submit --address http://HEAD:8265 -- sweep --data-root /data/fer")
    if command[0] == "sweep" and not {"--yes", "-y"} & set(command):
        command = [*command, "--yes"]  # a job has no terminal to confirm on
    if Path.home().joinpath(".ray/auth_token").is_file():
        os.environ.setdefault("RAY_AUTH_MODE", "token")  # Ray 2.60's default; the client must say so
    entrypoint = shlex.join(["python", "-m", "raytrain", *command])
    runtime_env = {"working_dir": str(working_dir or Path.cwd())}
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
                    "check the address (the dashboard port, e.g. http://HEAD:8265) and RAY_AUTH_MODE=token with the cluster's token"
                ) from None
            print(f"submit: attempt {attempt} failed ({type(err).__name__}); retrying", file=sys.stderr)
            time.sleep(2 * attempt)
    print(f"submitted job {job_id}: {entrypoint}", flush=True)
    if not follow:
        return 0
    asyncio.run(_print_logs(client, job_id))
    status = _final_status(client, job_id)
    print(f"job {job_id}: {status}")
    return FINAL_STATES.get(status, 1)


async def _print_logs(client, job_id: str) -> None:
    async for lines in client.tail_job_logs(job_id):
        print(lines, end="", flush=True)


def _final_status(client, job_id: str) -> str:
    while (status := str(client.get_job_status(job_id)).split(".")[-1]) not in FINAL_STATES:
        time.sleep(0.5)  # the log stream can end a moment before the status turns final
    return status
