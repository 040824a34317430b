"""A real adaptive search (Optuna TPE through Ray Tune, with ASHA) on the tiny synthetic data: killed
with SIGKILL mid-search and resumed, then checked for what a user would notice. One search is shared
by every test here; it costs about a minute on two cores."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
from pathlib import Path

import pytest
import yaml

from raytrain import artifacts, results
from raytrain.report import render_report
from tests.conftest import PROJECT_ROOT
from tests.test_resume import start, wait_for

SEARCH = "tpe"
BUDGET = 6  # startup_trials(6) = 2: t003..t006 are proposed by TPE from the results before them
SEED = 3
SEARCH_YAML = f"""
extends: {PROJECT_ROOT / "configs/demo/baseline_small.yaml"}
name: {SEARCH}
training: {{epochs: 3, batch_size: 16}}
data: {{img_size: 24}}
other: {{workers: 1, patience: 5}}
search:
  algorithm: optuna
  num_samples: {BUDGET}
  max_concurrent: 1
  seed: {SEED}
  # reduction_factor 2 at epoch 1: a trial whose first epoch scores below the median of those before
  # it is stopped, so some of six sequential trials are pruned
  scheduler: {{type: asha, grace_period: 1, reduction_factor: 2}}
  space:
    training.lr: {{loguniform: [1.0e-4, 3.0e-2]}}
    training.weight_decay: {{uniform: [0.0, 0.1]}}
"""
NAMES = [f"{SEARCH}/t{n:03d}" for n in range(1, BUDGET + 1)]


@pytest.fixture(scope="module")
def search_runs(subprocesses, synthetic_root, tmp_path_factory) -> dict:
    """`raytrain sweep` of the search, SIGKILLed once two trials have finished, then `raytrain resume`."""
    root = tmp_path_factory.mktemp("search")
    configs = root / "configs"
    configs.mkdir()
    (configs / f"{SEARCH}.yaml").write_text(SEARCH_YAML)
    runs = root / "runs"
    driver = start(["sweep", str(configs), "--data-root", str(synthetic_root), "--runs-dir", str(runs), "--yes"], root)
    try:
        # generous: on a shared 2-core box the first two trials can take minutes
        wait_for(lambda: len(artifacts.read_log(runs)) >= 2, 600, "two trials to finish")
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and its Ray, with no chance to save
        driver.wait(timeout=60)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    finished_at_kill = [r["experiment"] for r in artifacts.read_log(runs)]
    resumed = subprocesses.run(
        [sys.executable, "-m", "raytrain", "resume", "--runs-dir", str(runs)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=900,
        env=dict(os.environ, RAYTRAIN_CACHE_DIR=str(root / "cache")),
    )
    assert resumed.returncode == 0, (
        (root / "driver.log").read_text()[-2000:] + resumed.stdout[-3000:] + resumed.stderr[-3000:]
    )
    return {
        "root": root,
        "runs": runs,
        "configs": configs,
        "finished_at_kill": finished_at_kill,
        "resumed": resumed.stdout,
    }


def test_killed_search_resumes_to_exactly_its_budget(search_runs):
    runs = search_runs["runs"]
    assert 2 <= len(search_runs["finished_at_kill"]) < BUDGET, "the kill came after the search ended: it proves nothing"
    log = artifacts.read_log(runs)
    assert sorted(r["experiment"] for r in log) == NAMES, "one log line per trial, none proposed twice, none missing"
    assert all(artifacts.is_complete(runs, name) for name in NAMES)
    assert sorted(p.name for p in (runs / SEARCH).iterdir()) == [n.split("/")[1] for n in NAMES]
    assert "0 failed, 0 unfinished" in search_runs["resumed"]


def test_trials_are_named_in_the_order_proposed_with_their_values_in_config_yaml(search_runs):
    runs = search_runs["runs"]
    # finished trials keep the names they had before the kill
    assert search_runs["finished_at_kill"] == NAMES[: len(search_runs["finished_at_kill"])]
    for name in NAMES:
        config = yaml.safe_load((runs / name / artifacts.CONFIG).read_text())
        assert config["name"] == name
        [params] = [json.loads(p.read_text()) for p in runs.glob(f"_tune/*/{name.replace('/', '__')}_*/params.json")]
        assert config["training"] == params["experiment"]["training"], "config.yaml holds the values the trial ran"
        assert 1e-4 <= config["training"]["lr"] <= 3e-2 and 0.0 <= config["training"]["weight_decay"] <= 0.1
    drawn = {(c["training"]["lr"], c["training"]["weight_decay"]) for c in map(_config, [runs / n for n in NAMES])}
    assert len(drawn) == BUDGET, "each trial is its own point"


def test_each_proposal_is_tpe_given_the_results_before_it(search_runs):
    """Replay the search in Optuna: asking a TPE sampler with the same seed, after telling it each
    earlier trial's score, proposes exactly what each trial ran. Told other scores, it proposes
    other points, so the proposals were made from the results, not drawn up front."""
    optuna = pytest.importorskip("optuna")
    runs = search_runs["runs"]
    points = [_config(runs / name)["training"] for name in NAMES]
    scores = [artifacts.read_json(runs / name / artifacts.BEST_METRICS)["macro_f1"] for name in NAMES]
    assert _replay(optuna, scores) == [(p["lr"], p["weight_decay"]) for p in points]
    shuffled = scores[1:2] + scores[0:1] + scores[2:] if scores[0] != scores[1] else [0.9, 0.0, *scores[2:]]
    assert _replay(optuna, shuffled)[2:] != _replay(optuna, scores)[2:], "TPE ignored the scores"


def _replay(optuna, scores: list[float]) -> list[tuple[float, float]]:
    from raytrain.sweeps.searchers import startup_trials

    distributions = {
        "experiment/training/lr": optuna.distributions.FloatDistribution(1e-4, 3e-2, log=True),
        "experiment/training/weight_decay": optuna.distributions.FloatDistribution(0.0, 0.1),
    }
    sampler = optuna.samplers.TPESampler(seed=SEED, n_startup_trials=startup_trials(BUDGET))
    study = optuna.create_study(direction="maximize", sampler=sampler)
    proposed = []
    for score in scores:
        trial = study.ask(fixed_distributions=distributions)
        proposed.append((trial.params["experiment/training/lr"], trial.params["experiment/training/weight_decay"]))
        study.tell(trial, score)
    return proposed


def test_pruned_trials_are_labelled_pruned_everywhere(search_runs, run_cli):
    runs = search_runs["runs"]
    log = {r["experiment"]: r for r in artifacts.read_log(runs)}
    pruned = sorted(name for name, r in log.items() if r["status"] == "pruned")
    assert pruned, "ASHA pruned nothing: the test proves nothing (change SEED)"
    for name, record in log.items():
        history = json.loads((runs / name / artifacts.HISTORY).read_text())
        stopped_early = len(history) < 3
        assert (record["status"] == "pruned") == stopped_early, (name, record)
        assert record["epochs_run"] == len(history)
        # test is evaluated only on a trial's final epoch: a pruned trial has none, a completed one has it
        assert (runs / name / artifacts.TEST_METRICS).is_file() == (not stopped_early)
        assert (runs / name / artifacts.BEST_WEIGHTS).is_file()

    frame = results.load(runs).set_index("experiment")
    assert sorted(frame.index[frame["status"] == "pruned"]) == pruned
    assert frame.loc[pruned, "test/macro_f1"].isna().all()

    shown = run_cli("compare", "--runs-dir", runs)
    assert shown.code == 0
    for name in pruned:
        row = next(line for line in shown.out.splitlines() if f" {name} " in line)
        assert f"pruned (epoch {log[name]['epochs_run']})" in row
    assert "training.lr" in shown.out and "training.weight_decay" in shown.out, "the searched values are columns"

    page = render_report(runs)
    for name in pruned:
        assert f"<td>pruned (epoch {log[name]['epochs_run']})</td>" in page
    assert f"{len(pruned)} of {BUDGET} experiments" in page and "pruned" in page
    assert 'id="search"' in page and "best val macro F1 so far against trials finished" in page
    # with hundreds of trials the scatter of each searched knob is what shows where the good region is
    assert f'alt="{SEARCH}: val macro F1 against each searched knob"' in page


def test_the_plan_says_how_many_trials_and_who_proposes_them(search_runs, run_cli, tmp_path):
    shown = run_cli("sweep", search_runs["configs"], "--runs-dir", tmp_path / "runs", "--dry-run")
    assert shown.code == 0
    assert f"up to {BUDGET} trials, proposed by optuna" in shown.out
    assert f"{SEARCH}/t001..t{BUDGET:03d}" in shown.out and "searches training.lr, training.weight_decay" in shown.out
    # finished with its whole budget in runs/: the same command has nothing left to run
    again = run_cli("sweep", search_runs["configs"], "--runs-dir", search_runs["runs"], "--dry-run")
    assert "done (skipped)" in again.out


def test_a_search_does_not_share_a_sweep(search_runs, run_cli):
    other = search_runs["root"] / "more"
    other.mkdir(exist_ok=True)
    (other / "plain.yaml").write_text(f"extends: {PROJECT_ROOT / 'configs/demo/baseline_small.yaml'}\n")
    shown = run_cli("sweep", search_runs["configs"], other, "--dry-run")
    assert shown.code == 2 and "Traceback" not in shown.err
    assert f"{SEARCH}.yaml: search.algorithm: optuna runs as a sweep of its own" in shown.err


def test_the_same_seed_proposes_the_same_first_points():
    from raytrain.config import load_config
    from raytrain.config.search_space import search_seed
    from raytrain.sweeps.searchers import adaptive_param_space, build_searcher

    def first_points(seed: int) -> list[dict]:
        config = load_config(PROJECT_ROOT / "configs/search/lr_search_optuna.yaml", [f"search.seed={seed}"])
        base = config.model_copy(update={"search": None}).model_dump(mode="json")
        search = {"num_samples": config.search.num_samples, "max_concurrent": None, "seed": search_seed(config)}
        searcher = build_searcher(search, config.name)
        searcher.set_search_properties(None, None, adaptive_param_space(base, config.search.space))
        return [searcher.suggest(f"trial{i}") for i in range(3)]

    assert first_points(1) == first_points(1)
    assert first_points(1) != first_points(2)
    assert [p["experiment"]["name"] for p in first_points(1)] == [
        "lr_search_optuna/t001",
        "lr_search_optuna/t002",
        "lr_search_optuna/t003",
    ]


def test_sweep_max_concurrent_limits_the_searcher_not_a_second_limiter(ray_session, tmp_path):
    from raytrain.sweeps.driver import start_sweep
    from raytrain.sweeps.plan import plan_sweep

    plan = plan_sweep([PROJECT_ROOT / "configs/search/lr_search_optuna.yaml"], runs_dir=tmp_path / "runs")
    assert [t.name for t in plan.trials] == ["lr_search_optuna"] and plan.trials[0].adaptive
    settings = start_sweep(plan, name=plan.name, data_root=tmp_path, runs_dir=tmp_path / "runs", max_concurrent=2)
    assert settings.max_concurrent is None and settings.search["max_concurrent"] == 2  # the smaller of 4 and 2
    assert settings.scheduler["type"] == "asha" and "search" not in settings.experiments[0]
    assert (
        start_sweep(plan, name=plan.name, data_root=tmp_path, runs_dir=tmp_path / "runs").search["max_concurrent"] == 4
    )


def test_search_seed_also_seeds_grid_random_draws(tmp_path):
    from raytrain.sweeps.plan import plan_sweep

    def lrs(*overrides: str) -> list[float]:
        plan = plan_sweep(
            [PROJECT_ROOT / "configs/search/lr_search.yaml"], runs_dir=tmp_path, overrides=list(overrides)
        )
        return sorted({t.config.training.lr for t in plan.trials})

    assert lrs("search.seed=1") == lrs("search.seed=1") != lrs("search.seed=2")
    assert lrs() not in (lrs("search.seed=1"), lrs("search.seed=2")), "no seed: drawn from the name, as before"


def _config(folder: Path) -> dict:
    return yaml.safe_load((folder / artifacts.CONFIG).read_text())


def test_the_search_benchmark_runs_in_smoke_mode(ray_session, tmp_path, monkeypatch, capsys):
    """tests/bench/bench_search.py --smoke: the grid and the three searches, really run (tiny), in this test's Ray."""
    import importlib.util

    monkeypatch.setenv("RAYTRAIN_CACHE_DIR", str(tmp_path / "cache"))  # restored after the benchmark sets it
    monkeypatch.syspath_prepend(str(PROJECT_ROOT / "tests/bench"))  # where a script run finds scratch.py
    spec = importlib.util.spec_from_file_location("bench_search", PROJECT_ROOT / "tests/bench/bench_search.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.main(["--smoke", "--work", str(tmp_path / "bench")])
    out = capsys.readouterr().out
    table = out[out.index("trials per method") :]
    for method in ("grid", "optuna_asha", "random_asha", "pbt"):
        assert re.search(rf"^{method} +(-|1) +0\.\d{{3}} ", table, re.MULTILINE), table
    assert (tmp_path / "bench/runs/optuna_asha_s1/optuna_asha_s1/t002/config.yaml").is_file()
