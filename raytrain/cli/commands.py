"""What each verb does: validate, run, sweep, resume, submit, compare, importance, report, demo, data,
predict. Each imports what it needs inside, so a verb pays only for its own imports (validate: no
Ray, no torch; compare: no pydantic).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from raytrain.errors import UserError

COMPARE_TOP = 50  # rows `raytrain compare` shows unless told otherwise


def cmd_validate(args: argparse.Namespace) -> int:
    from raytrain.config import ConfigError, config_hash, load_config, to_yaml

    problems: list[str] = []
    for path in args.configs:
        try:
            config = load_config(path, args.overrides)
        except ConfigError as err:
            problems += err.problems
            continue
        print(f"# {path} (config hash {config_hash(config)})")
        print(to_yaml(config), end="---\n" if len(args.configs) > 1 else "")
    if problems:
        raise ConfigError(problems)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """One config, no prompt: a sweep of one."""
    args.configs = [args.config]
    args.filter = args.name = args.max_concurrent = None
    args.yes, args.dry_run = True, False
    return cmd_sweep(args)


def cmd_sweep(args: argparse.Namespace) -> int:
    from raytrain.sweeps.plan import local_gpu_count, plan_sweep, plan_table, whole_gpu_note

    # --precision is a named --set, applied last so it wins over a --set of the same key
    overrides = [*args.overrides, *([f"training.precision={args.precision}"] if args.precision else [])]
    plan = plan_sweep(
        args.configs,
        runs_dir=args.runs_dir,
        overrides=overrides,
        filter_prefix=args.filter,
        force=args.force,
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
        name=args.name,
    )
    print(plan_table(plan))
    changed = [t.name for t in plan.trials if t.status == "changed" and not plan.force]
    if changed:
        print(f"note: {', '.join(changed)} finished earlier with a different config; --force re-runs them")
    local = not (args.address or os.environ.get("RAY_ADDRESS"))
    packing = whole_gpu_note(plan, local_gpu_count()) if local else None  # a cluster's GPUs are not known yet
    if packing:
        print(packing)
    if args.dry_run:
        return 0
    if not plan.to_run:
        print(f"nothing to run: every planned experiment is complete in {args.runs_dir} (--force re-runs)")
        return 0
    if args.data_root is None:
        raise UserError("--data-root is required: a folder of train/<class>/ images or a FER2013 csv")
    if not (args.address or os.environ.get("RAY_ADDRESS")):
        _require_pretrained_weights(plan.to_run)  # a local sweep's trials run here: check this machine
    from raytrain.sweeps import driver
    from raytrain.sweeps.locks import hold_sweep
    from raytrain.sweeps.outcome import interrupted_sweep
    from raytrain.sweeps.settings import SweepSettings, require_writable, sweep_file, unused_sweep_name
    from raytrain.trackers import check_trackers

    interrupted = interrupted_sweep(args.runs_dir, plan.name)
    if interrupted is not None and _confirm(
        f"sweep {plan.name} was interrupted with {len(interrupted)} trial(s) unfinished; resume it instead of "
        "starting over?",
        args.yes,
        default=True,
    ):
        return _resume(SweepSettings.load(sweep_file(args.runs_dir, plan.name)), args, asked_tracking=_tracking(args))
    if not _confirm(f"run {len(plan.to_run)} trial(s) as sweep {plan.name}?", args.yes, default=True):
        print("cancelled")
        return 130
    require_writable(args.runs_dir, args.storage)
    tracking = _tracking(args)
    check_trackers(tracking)  # a tracker that cannot be used is an error before Ray starts
    name = unused_sweep_name(args.runs_dir, plan.name)
    claims = [experiment for trial in plan.to_run for experiment in trial.experiment_names]
    with hold_sweep(args.runs_dir, name, claims, force=plan.force) as lock:
        plan = _without_refused(plan, lock.refused)
        settings = driver.start_sweep(
            plan,
            name=name,
            data_root=args.data_root,
            runs_dir=args.runs_dir,
            storage=args.storage,
            address=args.address,
            max_concurrent=args.max_concurrent,
            tracking=tracking,
            verbose=args.verbose,
        )
        return _finish(driver.run_sweep(settings, verbose=args.verbose), args.runs_dir, settings.storage)


def _without_refused(plan, refused: dict):
    """The plan less the experiments another live sweep runs (locks.hold_sweep refused them), with a
    note for each; none left is an error."""
    from raytrain.sweeps.locks import SweepBusy

    if not refused:
        return plan
    busy = [t for t in plan.to_run if any(name in refused for name in t.experiment_names)]
    holders = {refused[name].describe() for t in busy for name in t.experiment_names if name in refused}
    said = f"{', '.join(t.name for t in busy)}: another sweep is running {'it' if len(busy) == 1 else 'them'} " + (
        f"({'; '.join(sorted(holders))})"
    )
    if len(busy) == len(plan.to_run):
        raise SweepBusy(f"{said}; run this command again once it has finished, or pass --force to run them here too")
    print(f"note: skipping {said}; run this command again once it has finished")
    return dataclasses.replace(plan, trials=[t for t in plan.trials if t not in busy])


def _require_pretrained_weights(trials) -> None:
    """Every trial that would fail for want of ImageNet weights in the torch cache, as one error before
    Ray starts. torch is imported only when a config asks for pretrained weights."""
    needing: dict[str, list] = {}
    for trial in trials:
        if trial.config.model.pretrained:
            needing.setdefault(trial.config.model.arch, []).append(trial)
    if not needing:
        return
    from raytrain.config import ConfigError
    from raytrain.training.models import missing_pretrained_weights

    problems = []
    for arch, planned in needing.items():
        problem = missing_pretrained_weights(arch)
        if problem:
            sources = ", ".join(sorted({str(t.source) for t in planned}))
            problems.append(f"{sources}: {problem} (needed by {', '.join(t.name for t in planned)})")
    if problems:
        raise ConfigError(problems)


def _tracking(args: argparse.Namespace) -> dict:
    """--mlflow URI and --wandb PROJECT as SweepSettings.tracking saves them."""
    return {key: getattr(args, key) for key in ("mlflow", "wandb") if getattr(args, key, None)}


def cmd_resume(args: argparse.Namespace) -> int:
    from raytrain.naming import name_problem
    from raytrain.sweeps.settings import SweepError, SweepSettings, latest_sweep, sweep_file

    if args.sweep and (problem := name_problem(args.sweep)):
        raise SweepError(f"SWEEP: {problem}; `ls {args.runs_dir}/_tune` lists the sweeps")
    path = sweep_file(args.runs_dir, args.sweep) if args.sweep else latest_sweep(args.runs_dir)
    if not path.is_file():
        raise SweepError(f"{path}: no such sweep; `ls {args.runs_dir}/_tune` lists them")
    return _resume(SweepSettings.load(path), args)


def _resume(settings, args: argparse.Namespace, *, asked_tracking: dict | None = None) -> int:
    """Continue an interrupted sweep: `resume`, or a `sweep` command run again that said yes."""
    from raytrain.sweeps import driver
    from raytrain.sweeps.locks import SweepBusy, hold_sweep
    from raytrain.sweeps.settings import require_writable
    from raytrain.trackers import check_trackers

    # first: a second command on a running sweep must leave its files alone
    with hold_sweep(settings.runs_dir, settings.name, settings.planned_names(), force=settings.force) as lock:
        if lock.refused:
            holders = "; ".join(sorted({holder.describe() for holder in lock.refused.values()}))
            raise SweepBusy(
                f"sweep {settings.name} cannot resume now: another sweep is running {', '.join(sorted(lock.refused))} "
                f"({holders}); resume once it has finished"
            )
        if lock.previous is not None:
            print(f"note: sweep {settings.name}'s last run ({lock.previous.describe()}) ended without finishing")
        require_writable(Path(settings.runs_dir), settings.storage)
        if asked_tracking and asked_tracking != (settings.tracking or {}):
            # the trackers are saved with the Tune experiment; Tune restores them as they were
            print(
                f"note: sweep {settings.name} resumes with the trackers it started with "
                f"({settings.tracking or 'none'}), not {asked_tracking}"
            )
        check_trackers(settings.tracking)  # the trackers the sweep started with: resumed trials continue their runs
        print(
            f"resuming sweep {settings.name}: finished trials are kept, unfinished ones continue from their last "
            "checkpoint"
        )
        outcome = driver.run_sweep(settings, restore=True, verbose=args.verbose)
    return _finish(outcome, args.runs_dir, settings.storage)


def cmd_submit(args: argparse.Namespace) -> int:
    from raytrain.sweeps.jobs import submit

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    return submit(args.address, command, follow=not args.no_wait)


def _finish(outcome, runs_dir: Path, storage: str) -> int:
    _export(runs_dir)
    pruned = f", {len(outcome.pruned)} pruned" if outcome.pruned else ""  # stopped early by ASHA
    print(
        f"\n{len(outcome.completed)} completed{pruned}, {len(outcome.failed)} failed, {len(outcome.unfinished)} "
        f"unfinished; results in {runs_dir}/"
    )
    for name, error in outcome.failed.items():
        print(f"  FAILED {name}: {error}")
    if outcome.unfinished:
        print(f"  interrupted: `raytrain resume --runs-dir {runs_dir}` continues {', '.join(outcome.unfinished)}")
    if outcome.completed or outcome.pruned:
        print(
            f"next:\n  raytrain compare --runs-dir {runs_dir}   # the leaderboard\n"
            f"  raytrain report --runs-dir {runs_dir}    # HTML: curves, confusion matrices, plots\n"
            f"  tensorboard --logdir {storage}   # per-epoch curves"
        )
    return outcome.exit_code


def _export(runs_dir: Path, frame=None) -> None:
    """runs/results.parquet, .csv, history.parquet and per_class.parquet, kept in step with runs/."""
    from raytrain import results

    try:
        results.export(runs_dir, frame)
    except OSError as err:  # a full or read-only disk: the experiments are safe; the tables can wait
        print(
            f"warning: {runs_dir}: could not write results.parquet/.csv ({err.strerror or err}); "
            "`raytrain compare` writes them once the folder can be written",
            file=sys.stderr,
        )


def _confirm(question: str, yes: bool, *, default: bool) -> bool:
    """Ask on the terminal; --yes answers for the user. Ctrl+C (KeyboardInterrupt) and Ctrl+D cancel."""
    if yes:
        print(f"{question} yes (--yes)")
        return True
    if not sys.stdin.isatty():
        raise UserError(f"{question} -- no terminal to ask on: pass --yes to go ahead")
    try:
        answer = input(f"{question} [{'Y/n' if default else 'y/N'}] ").strip().lower()
    except EOFError:  # Ctrl+D: no answer at all, which must not pass for the default
        raise KeyboardInterrupt from None
    return default if not answer else answer in ("y", "yes")


def cmd_compare(args: argparse.Namespace) -> int:
    from raytrain import results
    from raytrain.results.leaderboard import compare
    from raytrain.results.tables import compare_table, per_class_table, repeats_table

    if args.per_class and args.export:
        raise UserError(
            "--export writes the leaderboard, which --per-class replaces; use --export-runs for every column of "
            "every run"
        )
    frame = results.load(args.runs_dir)
    if frame.empty:
        raise UserError(f"{args.runs_dir}: no experiments yet; run `raytrain sweep --data-root DATA` first")
    _export(args.runs_dir, frame)
    board = compare(
        frame,
        args.runs_dir,
        split=args.split,
        sort=args.sort,
        filter_prefix=args.filter,
        baseline=args.baseline,
        per_class=args.per_class,
    )
    if board.ranked_by_test:
        print(
            "warning: ranking by test metrics. Choose models on val; test is for reporting the chosen one once.",
            file=sys.stderr,
        )
    if board.mixed_data:
        print(
            f"warning: {board.mixed_data}. The data column says which is which; --filter data=FINGERPRINT keeps one",
            file=sys.stderr,
        )
    # a terminal table of a thousand rows helps nobody and takes seconds to lay out: the best few, the rest counted
    top = None if args.all else (args.top or COMPARE_TOP)
    shown, layout = board.table.head(top), {"split": args.split, "classes": board.classes}
    if args.per_class:
        print(per_class_table(shown, **layout))
    elif board.repeats:
        print(repeats_table(shown, baseline=args.baseline, **layout))
    else:
        print(compare_table(shown, sort=board.sort_column, baseline=args.baseline, **layout))
    _print_left_out(len(board.table) - len(shown), "experiments", args)
    # the files hold every row of the table, not only the ones the terminal had room for
    if args.export:
        export = board.export  # the rows above with every config key and every metric of the split
        print(
            f"wrote {results.write_table(export, args.export)}: the table above, every row, with every config key "
            f"and {args.split} metric ({len(export)} rows, {len(export.columns)} columns)"
        )
    if args.export_runs:
        runs = board.runs
        print(
            f"wrote {results.write_table(runs, args.export_runs)}: one row per run ({len(runs)} rows, "
            f"{len(runs.columns)} columns)"
        )
    return 0


def _print_left_out(count: int, what: str, args: argparse.Namespace) -> None:
    if count > 0:
        print(
            f"... and {count} more {what} (--top N or --all shows them; every row is in "
            f"{args.runs_dir / 'results.csv'}, or --export FILE)"
        )


def cmd_importance(args: argparse.Namespace) -> int:
    """What mattered: each knob's importance with its interval (results.importance). Too few runs for
    an answer is an answer too (exit 0), with the reason and no table."""
    from raytrain import results
    from raytrain.results.importance import analyze, metric_column, select_runs
    from raytrain.results.tables import importance_table

    frame = results.load(args.runs_dir)
    if frame.empty:
        raise UserError(f"{args.runs_dir}: no experiments yet; run `raytrain sweep --data-root DATA` first")
    column = metric_column(args.split, args.metric)
    if column.startswith("test/"):
        print("warning: test metrics. Decide on val; test is for reporting the chosen model once.", file=sys.stderr)
    found = analyze(select_runs(frame, filter_prefix=args.filter, column=column), column)
    print(importance_table(found))
    if args.export and found.too_few:
        print(f"nothing written to {args.export}: there is no table to write")
    elif args.export:
        print(f"wrote {results.write_table(found.table, args.export)}: every column ({len(found.table)} knobs)")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from raytrain.report import write_report

    out = write_report(args.runs_dir, args.out or args.runs_dir / "report.html", top=args.top, detail=args.detail)
    print(f"wrote {out} and {out.with_suffix('.csv')} (every row)")
    return 0


DEMO_CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "demo"


def cmd_demo(args: argparse.Namespace) -> int:
    """The whole tool on a laptop CPU: data, a parallel sweep, the leaderboard and the report."""
    from raytrain.data import generate_synthetic

    data, runs = args.out / "data", args.out / "runs"
    if not DEMO_CONFIGS.is_dir():
        raise UserError(
            f"{DEMO_CONFIGS}: the demo configs are missing; run the demo from a raytrain checkout (pip install -e .)"
        )
    if data.is_dir():
        print(f"[demo] 1/4 synthetic FER data: reusing {data}")
    else:
        print(f"[demo] 1/4 synthetic FER data: writing {data} (7 expressions, FER-like imbalance) ...", flush=True)
        generate_synthetic(data)
    print("[demo] 2/4 three configs as one parallel sweep: baseline_small, focal_small, sampler_small", flush=True)
    from raytrain.cli.parser import build_parser

    # the demo is these three commands, parsed as a user would type them
    parser = build_parser()
    force = ["--force"] if args.force else []
    code = cmd_sweep(
        parser.parse_args(
            ["sweep", str(DEMO_CONFIGS), "--data-root", str(data), "--runs-dir", str(runs), "--yes", *force]
        )
    )
    print("[demo] 3/4 the leaderboard (`raytrain compare`)", flush=True)
    cmd_compare(parser.parse_args(["compare", "--runs-dir", str(runs), "--baseline", "baseline_small"]))
    print("[demo] 4/4 the report (`raytrain report`)", flush=True)
    cmd_report(parser.parse_args(["report", "--runs-dir", str(runs), "--out", str(args.out / "report.html")]))
    print(f"[demo] done. Next: raytrain compare --runs-dir {runs} --per-class; open {args.out / 'report.html'}")
    return code


def cmd_data_synth(args: argparse.Namespace) -> int:
    from raytrain.data import generate_synthetic

    out = generate_synthetic(args.out, layout=args.layout, size=args.size, per_class=args.per_class, seed=args.seed)
    print(f"wrote a synthetic FER-like dataset to {out} ({args.layout}, {args.size} px, seed {args.seed})")
    return 0


def cmd_data_check(args: argparse.Namespace) -> int:
    from raytrain.data import check_dataset

    report = check_dataset(
        args.root,
        channels=args.channels,
        class_names=args.class_names,
        duplicates_sheet=args.duplicates_sheet,
        force=args.force,
    )
    print(report.format())
    return 0 if report.ok else 1  # problems found: usable data, but a script should notice


def cmd_predict(args: argparse.Namespace) -> int:
    from raytrain.errors import EXIT_USER_ERROR
    from raytrain.training.predict import predict

    failed = 0
    for result in predict(args.weights, args.images):
        if result.error:  # one line, and the other images are still classified
            failed += 1
            print(f"error: {result.error}", file=sys.stderr, flush=True)
            continue
        shown = ", ".join(f"{name} {probability:.1%}" for name, probability in result.ranked[: max(1, args.top)])
        print(f"{result.path}: {shown}", flush=True)
    if failed == len(args.images):
        return EXIT_USER_ERROR  # nothing classified: bad input
    return 1 if failed else 0  # as a sweep: 1 when some failed
