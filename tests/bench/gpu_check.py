"""The GPU device check: one call on a bare, offline GPU machine that reports what raytrain's CUDA path
does there (issue 25). Run it through tests/bench/gpu_check.sh:

    tests/bench/gpu_check.sh prepare          here, with the package registry: the carry folder .gpu_check/
    tests/bench/gpu_check.sh run              on the GPU machine, from the repository root: results in $OUT
    tests/bench/gpu_check.sh run --dry-run    here, on the CPU: every step, tiny, the CUDA-only parts skipped

The GPU machine has Python 3.12 and torch but not Ray, pydantic, jsonschema or tensorboardX, and
cannot reach a registry. `prepare` downloads the cp312 wheels it lacks (DEVICE_HAS says what it has),
unpacks them into one tree, trims Ray (its Java jar, the dashboard's web client, debug symbols) and
packs the tree as .gpu_check/site.tar.xz, well inside the 64 MiB that one call to the GPU machine
carries (.gpu_check/ is git-ignored: name it among the ignored paths the call carries, and give the
call 9 minutes).

`run` unpacks that tree, puts it first on PYTHONPATH, and runs each step in a process of its own,
under its own deadline (a hang costs that step, not the others), all within RUN_BUDGET_S:

    install    unpack the carried packages and import them (dry run: check the archive is whole)
    env        GPU, driver, torch and CUDA versions; what CUDA_VISIBLE_DEVICES a 0-GPU and a 0.25-GPU
               Ray task get, and the device raytrain's trial picks in each
    test_cuda  tests/test_cuda.py (it skips itself without CUDA)
    sweep      a real 3-trial `raytrain sweep` packed at --gpus-per-trial 0.25: img/s per epoch, GPU use
    bench      tests/bench/bench_gpu.py, shortened: 48 and 224 px, 1 and 4 packed trials
    compile    tests/bench/bench_compile.py: training.compile's graphs, recompiles and speed

Each step writes <step>.log under the output folder; summary.txt holds each step's outcome and the
figures against the targets. The dry run (which `make test` runs) proves the steps run and parse
their output; it cannot prove the carried cp312 packages import (this machine's Python differs), nor
anything about CUDA. Standard library only here: the steps import torch and Ray themselves.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CARRY = ROOT / ".gpu_check"  # ignored by git: carried to the GPU machine by name
ARCHIVE, MANIFEST = "site.tar.xz", "manifest.json"
CARRY_LIMIT = 64 * 2**20  # what one device call carries: the working tree and the carry folder together
RUN_BUDGET_S = 480  # the whole run step: 8 minutes, so a 9-minute call ends with time to spare
# (step, deadline in seconds on the GPU machine); the dry run's steps are tiny and share the same caps
# (their sum exceeds the budget: a late step gets what is left, the compile step last)
STEPS = [("install", 45), ("env", 45), ("test_cuda", 90), ("sweep", 90), ("bench", 120), ("compile", 110)]
# Targets set for an H100/H200-class GPU (issue 13): one trial at 224 px and 112 px, packed at 48 px
TARGETS = {"loop 224 px": 15_000, "loop 112 px": 40_000, "packed 48 px summed": 50_000, "4 packed / 1": 2.0}

# Distributions the run needs beyond the device image: Ray with its `tune` needs, raytrain's pydantic,
# and typing-extensions (pydantic asks for a newer one than torch's image may hold).
CARRIED = [
    "ray",
    "pydantic",
    "pydantic-core",
    "annotated-types",
    "typing-inspection",
    "typing-extensions",
    "jsonschema",
    "jsonschema-specifications",
    "referencing",
    "rpds-py",
    "tensorboardX",
]
RAY_EXTRAS = {"tune"}  # ray[default] (the dashboard and job server) is left out: `submit` is not checked
# The device image's Python packages (the device tool's KINDS.md, read 2026-11-17)
DEVICE_HAS = set(
    """absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build
certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core
cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock
flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx
huggingface-hub humanize hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin
jaxlib jaxtyping jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax llvmlite
lxml markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict
multipledispatch mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy numpyro nvidia-cublas
nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile
nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13 nvidia-ml-py nvidia-nccl-cu13
nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript opencv-python-headless optax
opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy
portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing
pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist
python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core
scikit-image scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six
sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl
tifffile tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision
tqdm transformers treescope triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug
wheel wrapt xarray xxhash yarl zipp""".split()
)
# raytrain's own requirements (pyproject.toml) that the check does not exercise, so need not carry:
# optuna serves search.algorithm optuna only
NOT_EXERCISED = {"optuna"}
# Parts of Ray the check never loads: the Java worker and the dashboard's web client (~45 MB)
RAY_TRIM = ["ray/jars", "ray/dashboard/client/build"]
WHEEL_TAGS = [
    "--python-version",
    "3.12",
    "--implementation",
    "cp",
    *[f"--platform={p}" for p in ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")],
]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# --- prepare (here, with the registry) ---------------------------------------------------------------


def prepare(dest: Path) -> int:
    """Download, unpack, trim and pack the carried packages into `dest`; check they are complete for
    the device and that the carry fits. Uses this Python's pip and its installed versions (the
    versions the tests run with here)."""
    from importlib.metadata import version

    pins = [f"{name}=={version(name)}" for name in CARRIED]
    print(f"carrying (cp312, manylinux x86-64): {' '.join(pins)}")
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as scratch:
        wheels, site = Path(scratch) / "wheels", Path(scratch) / "site"
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", *WHEEL_TAGS]
            + ["-d", str(wheels), *pins],
            check=True,
        )
        problems = []
        for wheel in sorted(wheels.glob("*.whl")):
            problems += unpack_wheel(wheel, site)
        if problems:
            print("the carried packages need what the device lacks:\n  " + "\n  ".join(problems))
            return 1
        trimmed = trim_ray(site)
        dest.mkdir(exist_ok=True)
        for old in (dest / ARCHIVE, dest / MANIFEST):
            old.unlink(missing_ok=True)
        unpacked = sum(p.stat().st_size for p in site.rglob("*") if p.is_file())
        print(f"packing {unpacked / 2**20:.0f} MB (after trimming {trimmed / 2**20:.0f} MB from Ray) ...", flush=True)
        pack(site, dest / ARCHIVE)
    archive = dest / ARCHIVE
    manifest = {
        "carried": pins,
        "archive_bytes": archive.stat().st_size,
        "sha256": hashlib.sha256(archive.read_bytes()).hexdigest(),
        "python": "cp312",
        "made": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    tree = working_tree_bytes()
    total = tree + manifest["archive_bytes"]
    print(
        f"{archive}: {manifest['archive_bytes'] / 2**20:.1f} MiB; with the working tree ({tree / 2**20:.1f} MiB) "
        f"a call carries {total / 2**20:.1f} MiB of {CARRY_LIMIT / 2**20:.0f}"
    )
    if total > CARRY_LIMIT:
        print("too large to carry: trim more (RAY_TRIM)")
        return 1
    return 0


def unpack_wheel(wheel: Path, site: Path) -> list[str]:
    """Unpack a wheel into `site` as pip would (its .data/purelib and platlib into the root) and return
    the requirements it has that neither the carry nor the device image meets."""
    carried, problems = {canonical(n) for n in CARRIED}, []
    with zipfile.ZipFile(wheel) as archive:
        for info in archive.infolist():
            parts = info.filename.split("/")
            if parts[0].endswith(".data"):
                if len(parts) < 3 or parts[1] not in ("purelib", "platlib"):
                    continue  # scripts, headers: not needed to import
                parts = parts[2:]
            target = site.joinpath(*parts)
            if info.is_dir():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as source, open(target, "wb") as out:
                shutil.copyfileobj(source, out)
            mode = info.external_attr >> 16
            if mode:
                target.chmod(mode & 0o755 | 0o644)
            if parts[-1] == "METADATA" and parts[0].endswith(".dist-info"):
                problems += [
                    f"{wheel.name} requires {name}"
                    for name in requirements(target.read_text(errors="replace"))
                    if name not in carried and name not in DEVICE_HAS
                ]
    return problems


def requirements(metadata: str) -> list[str]:
    """The distributions a METADATA file requires on Python 3.12 Linux (with RAY_EXTRAS), by name."""
    from packaging.requirements import Requirement

    names = []
    for line in metadata.splitlines():
        if not line.startswith("Requires-Dist:"):
            continue
        requirement = Requirement(line.partition(":")[2].strip())
        marker = requirement.marker
        environment = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux"}
        wanted = marker is None or any(
            marker.evaluate({**environment, "extra": extra}) for extra in ("", *sorted(RAY_EXTRAS))
        )
        if wanted:
            names.append(canonical(requirement.name))
    return names


def trim_ray(site: Path) -> int:
    """Remove RAY_TRIM and strip the debug symbols from Ray's binaries; returns the bytes saved."""
    before = sum(p.stat().st_size for p in (site / "ray").rglob("*") if p.is_file())
    for part in RAY_TRIM:
        shutil.rmtree(site / part, ignore_errors=True)
    strip = shutil.which("strip")
    binaries = [
        site / "ray/_raylet.so",
        site / "ray/core/src/ray/gcs/gcs_server",
        site / "ray/core/src/ray/raylet/raylet",
    ]
    if strip is None:
        print("note: no `strip` here: Ray's binaries keep their symbols (the archive is larger)")
    else:
        for binary in binaries:
            subprocess.run([strip, "--strip-unneeded", str(binary)], check=True)
    return before - sum(p.stat().st_size for p in (site / "ray").rglob("*") if p.is_file())


def pack(site: Path, archive: Path) -> None:
    """site/ as one xz tarball: xz packs Ray's binaries about a third smaller than a wheel's zip."""
    xz = shutil.which("xz")
    if xz:  # the xz tool uses every core; Python's lzma one
        with open(archive, "wb") as out:
            tar = subprocess.Popen(["tar", "-C", str(site), "-cf", "-", "."], stdout=subprocess.PIPE)
            subprocess.run([xz, "-6", "-T0", "-c"], stdin=tar.stdout, stdout=out, check=True)
            if tar.wait():
                raise RuntimeError("tar failed")
    else:
        with tarfile.open(archive, "w:xz") as out:
            out.add(site, arcname=".")


def working_tree_bytes() -> int:
    """What a device call carries of the repository: tracked files and untracked ones git does not ignore."""
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    return sum((ROOT / os.fsdecode(p)).stat().st_size for p in listed if p and (ROOT / os.fsdecode(p)).is_file())


# --- run (on the GPU machine, or --dry-run here) -------------------------------------------------------


class Run:
    """One run of the steps: where they write, their environment, and what each came to."""

    def __init__(self, out: Path, dry_run: bool):
        self.out, self.dry_run = out, dry_run
        self.start = time.monotonic()
        self.site = Path(tempfile.gettempdir()) / "raytrain-gpu-check-site"
        self.outcomes: list[tuple[str, str, float]] = []
        self.env = dict(os.environ, PYTHONUNBUFFERED="1", RAY_USAGE_STATS_ENABLED="0")
        self.env["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT)] + ([] if dry_run else [str(self.site)]) + [p for p in [os.environ.get("PYTHONPATH")] if p]
        )
        # the steps' decoded datasets go to a cache of their own, removed at the end, not the user's
        self.env.setdefault("RAYTRAIN_CACHE_DIR", str(out / "cache"))

    def left_s(self) -> float:
        return RUN_BUDGET_S - (time.monotonic() - self.start)

    def step(self, name: str, deadline_s: float, command: list[str]) -> None:
        """Run one step in a process session of its own, killed with everything it started (its Ray
        too) at its deadline or when the run's budget is spent."""
        limit = min(deadline_s, self.left_s())
        log = self.out / f"{name}.log"
        began = time.monotonic()
        if limit <= 5:
            self.outcomes.append((name, "not run: the run's time was spent", 0.0))
            log.write_text("not run: the run's time was spent\n")
            return
        print(f"== {name} (deadline {limit:.0f} s)", flush=True)
        with open(log, "w") as out:
            process = subprocess.Popen(
                command, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
            try:
                code = process.wait(timeout=limit)
                outcome = "ok" if code == 0 else f"failed (exit {code})"
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)  # the step's own session: its processes and nothing else
                process.wait()
                outcome = f"timed out after {limit:.0f} s"
        seconds = time.monotonic() - began
        text = log.read_text(errors="replace")
        skipped = re.search(r"^step skipped: (.*)$", text, re.MULTILINE)
        if outcome == "ok" and skipped:
            outcome = f"skipped: {skipped.group(1)}"
        self.outcomes.append((name, outcome, seconds))
        print(f"   {outcome} in {seconds:.0f} s; last lines:\n" + indent(tail(text, 6)), flush=True)

    def python(self, *args: str) -> list[str]:
        return [sys.executable, *args]


def run(out: Path, dry_run: bool) -> int:
    out.mkdir(parents=True, exist_ok=True)
    check = Run(out, dry_run)
    mode = ["--dry-run"] if dry_run else []
    me = str(Path(__file__).resolve())
    deadlines = dict(STEPS)
    check.step("install", deadlines["install"], check.python(me, "step", "install", *mode, "--site", str(check.site)))
    check.step("env", deadlines["env"], check.python(me, "step", "env", *mode))
    check.step(
        "test_cuda",
        deadlines["test_cuda"],
        check.python("-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "tests/test_cuda.py"),
    )
    check.step("sweep", deadlines["sweep"], check.python(me, "step", "sweep", *mode, "--work", str(out / "sweep")))
    bench = (
        ["--cpu-smoke", "--images", "32"]  # with its 1 and 2 packed trials: `make test` runs bench_gpu only here
        if dry_run
        else ["--sizes", "48,224", "--packs", "1,4", "--images", "8192", "--epochs", "2"]
        + ["--per-class", "1500", "--sweep-epochs", "3"]
    )
    check.step("bench", deadlines["bench"], check.python("tests/bench/bench_gpu.py", *bench))
    check.step(
        "compile", deadlines["compile"], check.python("tests/bench/bench_compile.py", *(["--smoke"] if dry_run else []))
    )
    shutil.rmtree(out / "sweep", ignore_errors=True)  # its data and runs: only the logs come back
    shutil.rmtree(out / "cache", ignore_errors=True)
    summary = summarize(check)
    (out / "summary.txt").write_text(summary)
    print(summary, flush=True)
    return 0 if all(o == "ok" or o.startswith("skipped") for _, o, _ in check.outcomes) else 1


def summarize(check: Run) -> str:
    lines = [f"gpu_check {'dry run (CPU)' if check.dry_run else 'run'}, {time.strftime('%Y-%m-%d %H:%M:%S')}"]
    lines += [f"  {name:<10} {outcome} ({seconds:.0f} s)" for name, outcome, seconds in check.outcomes]
    logs = {name: (check.out / f"{name}.log").read_text(errors="replace") for name, _, _ in check.outcomes}
    lines.append("environment:")
    lines += [f"  {line}" for line in re.findall(r"^env: (.*)$", logs.get("env", ""), re.MULTILINE)]
    pytest_said = re.findall(
        r"^=*\s*(\d+ (?:passed|failed|skipped|error).*?)\s*=*$", logs.get("test_cuda", ""), re.MULTILINE
    )
    lines.append(f"  tests/test_cuda.py: {pytest_said[-1] if pytest_said else 'no result line'}")
    lines.append("figures:")
    lines += [f"  {line}" for line in re.findall(r"^sweep: (.*)$", logs.get("sweep", ""), re.MULTILINE)]
    bench = logs.get("bench", "")
    lines += [f"  {line}" for line in re.findall(r"^(?:loop|packed) .*$", bench, re.MULTILINE)]
    lines += [
        f"  compile: {line}"
        for line in re.findall(
            r"^(?:first epoch|later epochs|graphs|train img/s): .*$", logs.get("compile", ""), re.MULTILINE
        )
    ]
    lines.append("targets (H100/H200 class):")
    for target, (measured, passed) in targets(bench).items():
        verdict = "not measured" if measured is None else f"{measured:,.2f} -> {'met' if passed else 'MISSED'}"
        lines.append(f"  {target} >= {TARGETS[target]:,}: {verdict}")
    return "\n".join(lines) + "\n"


def targets(bench: str) -> dict[str, tuple[float | None, bool]]:
    """The bench figures against TARGETS (only where a GPU measured them)."""

    def loop(size: int) -> float | None:
        found = re.search(rf"^loop\s+{size} px: raytrain\s+([\d,]+) img/s", bench, re.MULTILINE)
        return float(found.group(1).replace(",", "")) if found else None

    packed = {
        int(n): (float(rate.replace(",", "")), float(gain))
        for n, rate, gain in re.findall(
            r"^packed (\d+) trial\(s\) \(\S+ GPU each\):\s+([\d,]+) img/s summed.*?gain over 1 trial ([\d.]+)x",
            bench,
            re.MULTILINE,
        )
    }
    measured = {
        "loop 224 px": loop(224),
        "loop 112 px": loop(112),
        "packed 48 px summed": max((rate for rate, _ in packed.values()), default=None),
        "4 packed / 1": packed[4][1] if 4 in packed else None,
    }
    return {name: (value, value is not None and value >= TARGETS[name]) for name, value in measured.items()}


def tail(text: str, lines: int) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def indent(text: str) -> str:
    return "\n".join(f"   | {line}" for line in text.splitlines())


# --- the steps that are not scripts of their own (run as `gpu_check.py step NAME`) -----------------------


def step_install(dry_run: bool, site: Path) -> None:
    archive, manifest_path = CARRY / ARCHIVE, CARRY / MANIFEST
    if not archive.is_file() or not manifest_path.is_file():
        if dry_run:
            print(f"step skipped: {CARRY.name}/ not prepared here (tests/bench/gpu_check.sh prepare makes it)")
            return
        raise SystemExit(f"{archive}: missing; run `tests/bench/gpu_check.sh prepare` and carry {CARRY.name}")
    manifest = json.loads(manifest_path.read_text())
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    if digest != manifest["sha256"]:
        raise SystemExit(f"{archive}: damaged (sha256 {digest}, the manifest says {manifest['sha256']}); prepare again")
    print(f"{archive.name}: {archive.stat().st_size / 2**20:.1f} MiB, whole; carries {' '.join(manifest['carried'])}")
    if dry_run:
        print("step skipped: the cp312 packages cannot be imported by this Python; the archive is whole")
        return
    shutil.rmtree(site, ignore_errors=True)
    site.mkdir(parents=True)
    began = time.monotonic()
    with tarfile.open(archive) as tar:
        tar.extractall(site, filter="fully_trusted")  # made by `prepare`; Ray's binaries keep their modes
    print(f"unpacked into {site} in {time.monotonic() - began:.0f} s")
    sys.path.insert(0, str(site))
    mismatched = unmet_requirements(manifest["carried"])
    for line in mismatched:
        print(f"warning: {line}")
    import pydantic
    import ray
    import tensorboardX  # noqa: F401 (Tune's TensorBoard logger)
    from ray import tune

    import raytrain.cli  # noqa: F401 (imports pydantic's models and the CLI)

    print(f"imported ray {ray.__version__} (tune: {tune.__name__}), pydantic {pydantic.VERSION}, tensorboardX ok")


def unmet_requirements(carried: list[str]) -> list[str]:
    """The carried packages' requirements that the device's installed versions do not meet."""
    from importlib.metadata import PackageNotFoundError, distribution, version

    from packaging.requirements import Requirement

    problems = []
    for pin in carried:
        name = pin.partition("==")[0]
        for text in distribution(name).requires or []:
            requirement = Requirement(text)
            if requirement.marker is not None and not any(
                requirement.marker.evaluate({"extra": extra}) for extra in ("", *sorted(RAY_EXTRAS))
            ):
                continue
            try:
                have = version(requirement.name)
            except PackageNotFoundError:
                problems.append(f"{name} needs {requirement}: not installed")
                continue
            if requirement.specifier and not requirement.specifier.contains(have, prereleases=True):
                problems.append(f"{name} needs {requirement}, the device has {have}")
    return problems


def step_env(dry_run: bool) -> None:
    import platform

    import torch

    say = lambda text: print(f"env: {text}", flush=True)  # noqa: E731
    say(f"python {platform.python_version()} at {sys.executable}, {os.cpu_count()} CPUs")
    cuda = torch.cuda.is_available()
    versions = f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}"
    say(f"{versions}, GPU seen: {cuda}")
    if cuda:
        props = torch.cuda.get_device_properties(0)
        say(
            f"GPU {props.name}, {props.total_memory / 2**30:.0f} GiB, {props.multi_processor_count} SMs, capability "
            f"{props.major}.{props.minor}, bf16 {torch.cuda.is_bf16_supported()}"
        )
    smi = shutil.which("nvidia-smi")
    if smi:
        query = subprocess.run(
            [smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
        )
        say(f"nvidia-smi: {query.stdout.strip() or query.stderr.strip()}")
    from raytrain.sweeps.plan import local_gpu_count

    say(f"GPUs the plan finds without torch (/proc/driver/nvidia): {local_gpu_count()}")
    import ray

    # the dry run's machine has no GPU: Ray is told of one, which is enough to see what it sets.
    # No idle workers started ahead: the probes get fresh ones anyway (docs/ray-notes.md)
    os.environ["RAY_prestart_worker_first_driver"] = "0"
    ray.init(num_cpus=1, num_gpus=1 if dry_run else None, include_dashboard=False, configure_logging=False)
    say(f"ray {ray.__version__}: the cluster has {ray.cluster_resources().get('GPU', 0):g} GPU(s)")
    probe = ray.remote(num_cpus=0)(_device_probe)
    shares = (0, 0.25)
    answers = ray.get([probe.options(num_gpus=gpus).remote(gpus) for gpus in shares])
    for gpus, (visible, seen, picked) in zip(shares, answers):
        say(
            f"a task with num_gpus={gpus:g}: CUDA_VISIBLE_DEVICES={visible!r}, torch sees {seen} GPU(s); "
            f"a trial with resources.gpu={gpus:g} trains on {picked}"
        )
    ray.shutdown()


def _device_probe(gpus: float) -> tuple[str | None, int, str]:
    """In a Ray task: what it sees, and the device a trial given `gpus` would pick there."""
    import torch

    from raytrain.training.numerics import pick_device

    return os.environ.get("CUDA_VISIBLE_DEVICES"), torch.cuda.device_count(), pick_device(gpus).type


def step_sweep(dry_run: bool, work: Path) -> None:
    """A real `raytrain sweep` of 3 trials packed on one GPU at 0.25 each (dry run: one tiny trial on
    the CPU, the same machinery)."""
    from raytrain.data import generate_synthetic

    size, per_class, epochs, batch, trials = (24, 6, 1, 16, 1) if dry_run else (48, 1500, 3, 256, 3)
    gpus, cpus = ("0", "1") if dry_run else ("0.25", "4")
    shutil.rmtree(work, ignore_errors=True)
    data = generate_synthetic(work / "data", size=48, per_class=per_class, seed=0)
    configs = work / "configs"
    configs.mkdir()
    for seed in range(1, trials + 1):
        (configs / f"packed_{seed}.yaml").write_text(
            f"extends: {ROOT / 'configs/demo/baseline_small.yaml'}\nname: packed_{seed}\n"
            f"training: {{epochs: {epochs}, batch_size: {batch}}}\ndata: {{img_size: {size}}}\n"
            f"other: {{patience: 100, seed: {seed}, workers: 4}}\n"
        )
    runs = work / "runs"
    command = [sys.executable, "-m", "raytrain", "sweep", str(configs), "--data-root", str(data)]
    command += ["--runs-dir", str(runs), "--yes", "--gpus-per-trial", gpus, "--cpus-per-trial", cpus]
    print("$ " + " ".join(command), flush=True)
    sampler = _gpu_sampler(work / "gpu.csv") if not dry_run and shutil.which("nvidia-smi") else None
    began = time.monotonic()
    try:
        done = subprocess.run(command, cwd=ROOT)
    finally:
        if sampler is not None:
            sampler.terminate()  # the sampler this step started, by its own handle
            sampler.wait()
    wall = time.monotonic() - began
    if done.returncode:
        raise SystemExit(f"the sweep failed (exit {done.returncode})")
    results = [
        json.loads(line)
        for path in sorted(runs.glob("_tune/*/*/result.json"))
        for line in path.read_text().splitlines()
        if line.strip()
    ]
    by_trial: dict[str, list[dict]] = {}
    for result in results:
        by_trial.setdefault(result["trial_id"], []).append(result)
    for trial, epochs_of in sorted(by_trial.items()):
        rates = ", ".join(f"{r['train/images_per_s']:,.0f}" for r in epochs_of)
        checkpoints = len(list(runs.glob(f"_tune/*/*{trial}*/checkpoint_*")))
        print(
            f"sweep: trial {trial}: train img/s per epoch {rates} ({epochs_of[-1]['precision_used']}), "
            f"checkpoint folders left {checkpoints}"
        )
    summed = sum(max(r["train/images_per_s"] for r in rows) for rows in by_trial.values())
    print(
        f"sweep: {len(by_trial)} trial(s) at --gpus-per-trial {gpus}: {summed:,.0f} img/s summed (best epochs), "
        f"wall {wall:.0f} s"
    )
    if sampler is not None:
        print(f"sweep: GPU while it ran: {_gpu_use(work / 'gpu.csv')}")
    checkpoint_cost(data, work, size=size, batch=batch)


def checkpoint_cost(data: Path, work: Path, *, size: int, batch: int) -> None:
    """What one checkpoint costs against one epoch, in a trial as the sweep's: writing it (state.pt,
    best.pt, the small files) and a copy of it (what Tune does next). other.checkpoint_minutes'
    default rests on this ratio."""
    from ray import tune

    from raytrain.config import load_config
    from raytrain.data import load_dataset
    from raytrain.training.trainable import TrainingRun, TrainState

    cfg = load_config(
        ROOT / "configs/demo/baseline_small.yaml", [f"data.img_size={size}", f"training.batch_size={batch}"]
    )
    dataset = load_dataset(data, cache_dir=work / "cache", workers=4)
    trial, state = TrainingRun(cfg, dataset), TrainState()
    trial.run_epoch(1, state)  # warm-up
    began = time.perf_counter()
    trial.run_epoch(2, state)
    epoch_s = time.perf_counter() - began
    folder = work / "checkpoint"
    folder.mkdir()
    began = time.perf_counter()
    trial.write_checkpoint(folder, state, final=False)
    written_s = time.perf_counter() - began
    shutil.copytree(folder, work / "checkpoint_000000")
    copied_s = time.perf_counter() - began - written_s
    megabytes = sum(p.stat().st_size for p in folder.iterdir()) / 2**20
    restored = TrainingRun(cfg, dataset)
    restored.restore(tune.Checkpoint.from_directory(str(work / "checkpoint_000000")))
    steps = {s["step"].device.type for s in restored.optimizer.state.values()}
    print(
        f"sweep: one checkpoint of {cfg.model.arch} ({megabytes:.0f} MB): written in {written_s:.2f} s, copied in "
        f"{copied_s:.2f} s; one {size} px epoch of {len(trial.splits['train'])} images: {epoch_s:.2f} s; restored "
        f"on {restored.device.type}, the optimiser's step counters on {', '.join(sorted(steps))}"
    )


def _gpu_sampler(path: Path) -> subprocess.Popen:
    query = ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits", "-lms", "500"]
    return subprocess.Popen(query, stdout=open(path, "w"), stderr=subprocess.DEVNULL)


def _gpu_use(path: Path) -> str:
    samples = [tuple(float(v) for v in line.split(",")) for line in path.read_text().splitlines() if "," in line]
    if not samples:
        return "no samples"
    busy = [u for u, _ in samples]
    return (
        f"utilisation mean {sum(busy) / len(busy):.0f}% max {max(busy):.0f}%, memory max "
        f"{max(m for _, m in samples) / 1024:.1f} GiB ({len(samples)} samples)"
    )


# --- command line ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    verbs.add_parser("prepare", help="here, with the registry: the carry folder .gpu_check/")
    run_parser = verbs.add_parser("run", help="on the GPU machine (or --dry-run here): every step")
    run_parser.add_argument("--dry-run", action="store_true", help="on the CPU, tiny: the CUDA-only parts skip")
    run_parser.add_argument("--out", type=Path, help="where the logs go (default: $OUT, else a new temporary folder)")
    step_parser = verbs.add_parser("step", help=argparse.SUPPRESS)
    step_parser.add_argument("name", choices=["install", "env", "sweep"])
    step_parser.add_argument("--dry-run", action="store_true")
    step_parser.add_argument("--site", type=Path)
    step_parser.add_argument("--work", type=Path)
    args = parser.parse_args(argv)
    if args.verb == "prepare":
        return prepare(CARRY)
    if args.verb == "run":
        out = args.out or Path(os.environ.get("OUT") or tempfile.mkdtemp(prefix="gpu-check-out-"))
        print(f"gpu_check: logs and summary.txt in {out}", flush=True)
        return run(out.resolve(), args.dry_run)
    if args.name == "install":
        step_install(args.dry_run, args.site)
    elif args.name == "env":
        step_env(args.dry_run)
    else:
        step_sweep(args.dry_run, args.work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
