"""Command line: argparse verbs that call the package's functions.

Every user error (ConfigError, DatasetError, ...) becomes one message on stderr and exit code 2, with
no traceback; anything else is a bug and keeps its traceback. A damaged file under runs/ is one
`warning:` line on stderr, once, and the command goes on. Heavy imports happen inside the verbs
so `raytrain validate` stays fast.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

from raytrain import trace
from raytrain.errors import UserError

EXIT_USER_ERROR = 2
COMPARE_TOP = 50  # rows `raytrain compare` shows unless told otherwise


def main(argv: list[str] | None = None) -> int:
    trace.mark("cli_starts")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return EXIT_USER_ERROR
    try:
        with _damage_as_one_line():
            return args.handler(args) or 0
    except KeyboardInterrupt:
        print("\ncancelled", file=sys.stderr)
        return 130
    except UserError as err:
        # a ConfigError lists its problems; matched by attribute so that raytrain.config (pydantic, ~0.4 s)
        # is imported only by the verbs that read configs, not by `compare` or `report`
        problems = getattr(err, "problems", None)
        print(f"error: {_problem_list(problems) if problems else err}", file=sys.stderr)
        return EXIT_USER_ERROR


@contextmanager
def _damage_as_one_line():
    """While a verb runs, each distinct DamagedRunsWarning is printed once as `warning: ...`, with no
    source line: the message names the file and what was skipped, which is all a user can act on."""
    from raytrain.artifacts import DamagedRunsWarning

    shown: set[str] = set()  # by hand: Ray changes the warning filters, which resets Python's own "once"
    with warnings.catch_warnings():
        warnings.simplefilter("always", DamagedRunsWarning)
        previous = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, DamagedRunsWarning):
                if str(message) not in shown:
                    shown.add(str(message))
                    print(f"warning: {message}", file=sys.stderr, flush=True)
            else:
                previous(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="raytrain", description="Run and compare image-classification experiments as Ray Tune sweeps."
    )
    verbs = parser.add_subparsers(title="commands", metavar="COMMAND")

    validate = verbs.add_parser("validate", help="check configs and print their resolved form")
    validate.add_argument("configs", nargs="+", metavar="CONFIG", help="YAML config files")
    _add_set_option(validate)
    validate.set_defaults(handler=cmd_validate)

    run = verbs.add_parser("run", help="run one experiment (a one-config sweep, no prompt)")
    run.add_argument("config", metavar="CONFIG")
    _add_run_options(run)
    _add_set_option(run)
    run.set_defaults(handler=cmd_run)

    sweep = verbs.add_parser("sweep", help="run many configs as one parallel Ray Tune sweep")
    sweep.add_argument(
        "configs", nargs="*", metavar="CONFIG_OR_DIR", help="configs or folders of them (default: configs/)"
    )
    _add_run_options(sweep)
    _add_set_option(sweep)
    sweep.add_argument("--filter", metavar="PREFIX", help="only experiments whose name starts with PREFIX")
    sweep.add_argument(
        "--yes", "-y", action="store_true", help="do not ask for confirmation (required without a terminal)"
    )
    sweep.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    sweep.add_argument("--max-concurrent", type=_positive_int, metavar="N", help="at most N trials at once")
    sweep.add_argument("--name", help="sweep name (default: derived from the planned trials, so a re-run finds it)")
    sweep.set_defaults(handler=cmd_sweep)

    resume = verbs.add_parser("resume", help="continue an interrupted sweep (default: the latest)")
    resume.add_argument("sweep", nargs="?", metavar="SWEEP", help="a sweep name under RUNS/_tune")
    resume.add_argument("--runs-dir", type=Path, default=Path("runs"))
    resume.add_argument(
        "--verbose", "-v", action="store_true", help="Ray's own output too: Tune's tables and the trials' logs"
    )
    resume.set_defaults(handler=cmd_resume)

    submit = verbs.add_parser("submit", help="run a raytrain command on a Ray cluster as a Ray Job")
    submit.add_argument("--address", required=True, help="the cluster's job server, e.g. http://HEAD:8265")
    submit.add_argument("--no-wait", action="store_true", help="submit and return; do not follow the logs")
    submit.add_argument(
        "command", nargs=argparse.REMAINDER, metavar="-- COMMAND", help="e.g. -- sweep --data-root /data/fer"
    )
    submit.set_defaults(handler=cmd_submit)

    compare = verbs.add_parser("compare", help="the leaderboard of finished experiments")
    compare.add_argument("--runs-dir", type=Path, default=Path("runs"))
    compare.add_argument(
        "--split", choices=("val", "test"), default="val", help="which split's metrics to show (select on val)"
    )
    compare.add_argument(
        "--sort", default="macro_f1", metavar="METRIC", help="e.g. macro_f1, accuracy, loss, f1/happy, duration_s"
    )
    compare.add_argument(
        "--top", type=_positive_int, metavar="N", help=f"the best N rows (default {COMPARE_TOP}; --all for every row)"
    )
    compare.add_argument(
        "--all", action="store_true", help="every row, however many (the CSV in RUNS has them all too)"
    )
    compare.add_argument("--baseline", metavar="NAME", help="show each experiment's macro F1 minus NAME's")
    compare.add_argument("--per-class", action="store_true", help="a class x experiment matrix of F1 instead")
    compare.add_argument("--filter", metavar="PREFIX", help="only experiments whose name starts with PREFIX")
    compare.add_argument(
        "--export",
        type=_table_file,
        metavar="FILE",
        help="also write the table shown, every row and column, to FILE.csv or FILE.parquet",
    )
    compare.add_argument(
        "--export-runs",
        type=_table_file,
        metavar="FILE",
        help="also write one row per run (every seed), every column, to FILE.csv or FILE.parquet",
    )
    compare.set_defaults(handler=cmd_compare)

    report = verbs.add_parser("report", help="write one self-contained HTML report with plots")
    report.add_argument("--runs-dir", type=Path, default=Path("runs"))
    report.add_argument("--out", type=Path, default=None, help="default: RUNS/report.html")
    report.add_argument(
        "--top",
        type=_positive_int,
        default=50,
        metavar="N",
        help="leaderboard rows (default 50); every row goes to the CSV beside the report",
    )
    report.add_argument(
        "--detail",
        type=_positive_int,
        default=10,
        metavar="K",
        help="experiments drawn with learning curves and per-class F1 (default 10); confusion matrices for up to 6 of them",
    )
    report.set_defaults(handler=cmd_report)

    demo = verbs.add_parser("demo", help="synthetic FER data, three small configs in parallel, table and report")
    demo.add_argument(
        "--out",
        type=Path,
        default=Path("raytrain-demo"),
        help="folder for data, runs and report (default raytrain-demo/)",
    )
    demo.add_argument("--force", action="store_true", help="train again even if the demo already ran here")
    demo.set_defaults(handler=cmd_demo)

    data_parser = verbs.add_parser("data", help="make or inspect a dataset")
    data_parser.set_defaults(handler=lambda _: data_parser.print_help() or EXIT_USER_ERROR)
    data = data_parser.add_subparsers(title="data commands", metavar="COMMAND")
    synth = data.add_parser("synth", help="write a synthetic FER-like dataset (procedural faces)")
    synth.add_argument("out", metavar="OUT", help="a new or empty folder")
    synth.add_argument(
        "--layout", choices=("folders", "csv"), default="folders", help="image folders or one fer2013.csv"
    )
    synth.add_argument("--size", type=int, default=48, help="image side in pixels (default 48, as FER2013)")
    synth.add_argument("--per-class", type=int, default=None, help="images per class (default: FER-like imbalance)")
    synth.add_argument("--seed", type=int, default=0)
    synth.set_defaults(handler=cmd_data_synth)
    check = data.add_parser("check", help="classes, counts per split, imbalance, image size, problems")
    check.add_argument("root", metavar="DATA", help="image folders (train/ val/ test/) or a FER2013 csv")
    check.add_argument("--channels", type=int, choices=(1, 3), default=1)
    check.set_defaults(handler=cmd_data_check)

    predict = verbs.add_parser("predict", help="classify images with a trained best.pt")
    predict.add_argument("weights", metavar="BEST_PT", help="runs/<experiment>/best.pt")
    predict.add_argument("images", nargs="+", metavar="IMAGE")
    predict.add_argument("--top", type=int, default=3, help="how many classes to show per image (default 3)")
    predict.set_defaults(handler=cmd_predict)
    return parser


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-root", "--data_root", dest="data_root", type=Path, help="image folders or a FER2013 csv"
    )
    parser.add_argument("--force", action="store_true", help="re-run experiments already complete in RUNS")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where results go (default runs/)")
    parser.add_argument("--address", help="an existing Ray cluster: auto, HOST:PORT or ray://HOST:10001")
    parser.add_argument(
        "--storage",
        help="where the Tune experiment (checkpoints) lives (default RUNS/_tune); on a cluster "
        "s3://BUCKET/PREFIX, with AWS_* variables on every node (cluster/README.md). RUNS stays on this machine",
    )
    parser.add_argument("--cpus-per-trial", type=_positive_float, metavar="C", help="overrides resources.cpu")
    parser.add_argument(
        "--gpus-per-trial",
        type=_non_negative_float,
        metavar="G",
        help="overrides resources.gpu (0.25 packs 4 trials per GPU)",
    )
    parser.add_argument(
        "--verbose", "-v", action="store_true", help="Ray's own output too: Tune's tables and the trials' logs"
    )
    parser.add_argument(
        "--precision",
        choices=("auto", "bf16", "fp32"),
        help="overrides training.precision (auto: bf16 on GPUs and on CPUs where it times faster; bf16 or fp32 force one)",
    )
    parser.add_argument(
        "--mlflow", metavar="URI", help="also log each trial as an MLflow run there (e.g. http://127.0.0.1:5000)"
    )
    parser.add_argument(
        "--wandb",
        metavar="PROJECT",
        help="also log each trial as a W&B run in PROJECT (WANDB_MODE=offline: local files)",
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def _table_file(text: str) -> Path:
    if not text.endswith((".csv", ".parquet")):
        raise argparse.ArgumentTypeError(f"{text}: name a .csv or .parquet file")
    return Path(text)


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _add_set_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config value by its dotted path, e.g. --set training.lr=0.001 (repeatable)",
    )


# --- verbs -----------------------------------------------------------------------------------------


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
    from raytrain.results.tables import plan_table
    from raytrain.sweeps.plan import plan_sweep

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
    if args.dry_run:
        return 0
    if not plan.to_run:
        print(f"nothing to run: every planned experiment is complete in {args.runs_dir} (--force re-runs)")
        return 0
    if args.data_root is None:
        raise UserError("--data-root is required: a folder of train/<class>/ images or a FER2013 csv")
    from raytrain.sweeps import driver as sweep
    from raytrain.trackers import check_trackers

    interrupted = sweep.interrupted_sweep(args.runs_dir, plan.name)
    if interrupted is not None and _confirm(
        f"sweep {plan.name} was interrupted with {len(interrupted)} trial(s) unfinished; resume it instead of starting over?",
        args.yes,
        default=True,
    ):
        settings = sweep.SweepSettings.load(sweep.sweep_file(args.runs_dir, plan.name))
        sweep.require_writable(Path(settings.runs_dir), settings.storage)
        asked = _tracking(args)
        if asked and asked != (settings.tracking or {}):
            # the trackers are saved with the Tune experiment; Tune restores them as they were
            print(
                f"note: sweep {plan.name} resumes with the trackers it started with ({settings.tracking or 'none'}), not {asked}"
            )
        check_trackers(settings.tracking)
        return _finish(sweep.run_sweep(settings, restore=True, verbose=args.verbose), args.runs_dir, settings.storage)
    if not _confirm(f"run {len(plan.to_run)} trial(s) as sweep {plan.name}?", args.yes, default=True):
        print("cancelled")
        return 130
    sweep.require_writable(args.runs_dir, args.storage)
    tracking = _tracking(args)
    check_trackers(tracking)  # a tracker that cannot be used is an error before Ray starts
    settings = sweep.start_sweep(
        plan,
        data_root=args.data_root,
        runs_dir=args.runs_dir,
        storage=args.storage,
        address=args.address,
        max_concurrent=args.max_concurrent,
        tracking=tracking,
        verbose=args.verbose,
    )
    return _finish(sweep.run_sweep(settings, verbose=args.verbose), args.runs_dir, settings.storage)


def _tracking(args: argparse.Namespace) -> dict:
    """--mlflow URI and --wandb PROJECT as SweepSettings.tracking saves them."""
    return {key: getattr(args, key) for key in ("mlflow", "wandb") if getattr(args, key, None)}


def cmd_resume(args: argparse.Namespace) -> int:
    from raytrain.sweeps import driver as sweep
    from raytrain.trackers import check_trackers

    path = sweep.sweep_file(args.runs_dir, args.sweep) if args.sweep else sweep.latest_sweep(args.runs_dir)
    if not path.is_file():
        raise sweep.SweepError(f"{path}: no such sweep; `ls {args.runs_dir}/_tune` lists them")
    settings = sweep.SweepSettings.load(path)
    sweep.require_writable(Path(settings.runs_dir), settings.storage)
    check_trackers(settings.tracking)  # the trackers the sweep started with: resumed trials continue their runs
    print(
        f"resuming sweep {settings.name}: finished trials are kept, unfinished ones continue from their last checkpoint"
    )
    return _finish(sweep.run_sweep(settings, restore=True, verbose=args.verbose), args.runs_dir, settings.storage)


def cmd_submit(args: argparse.Namespace) -> int:
    from raytrain.sweeps.jobs import submit

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    return submit(args.address, command, follow=not args.no_wait)


def _finish(outcome, runs_dir: Path, storage: str) -> int:
    _export(runs_dir)
    pruned = f", {len(outcome.pruned)} pruned" if outcome.pruned else ""  # stopped early by ASHA
    print(
        f"\n{len(outcome.completed)} completed{pruned}, {len(outcome.failed)} failed, {len(outcome.unfinished)} unfinished; results in {runs_dir}/"
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
    from raytrain.results import analysis, leaderboard
    from raytrain.results.tables import compare_table, per_class_table, repeats_table

    if args.per_class and args.export:
        raise UserError(
            "--export writes the leaderboard, which --per-class replaces; use --export-runs for every column of every run"
        )
    frame = results.load(args.runs_dir)
    if frame.empty:
        raise UserError(f"{args.runs_dir}: no experiments yet; run `raytrain sweep --data-root DATA` first")
    _export(args.runs_dir, frame)
    if args.filter:
        frame = frame[frame["experiment"].str.startswith(args.filter)]
        if frame.empty:
            raise UserError(f"--filter {args.filter}: no experiment name starts with {args.filter!r}")
    split = args.split
    if f"{split}/macro_f1" not in frame or frame[f"{split}/macro_f1"].isna().all():
        raise UserError(f"--split {split}: no experiment has {split} metrics (does the data have a {split}/ split?)")
    column = args.sort if ("/" in args.sort or args.sort in frame) else f"{split}/{args.sort}"
    if column not in frame:
        known = ", ".join(c.split("/", 1)[1] for c in frame.columns if c.startswith(f"{split}/"))
        raise UserError(f"--sort {args.sort}: no such metric; use one of: {known}, duration_s, best_epoch")
    if split == "test" or column.startswith("test/"):
        print(
            "warning: ranking by test metrics. Choose models on val; test is for reporting the chosen one once.",
            file=sys.stderr,
        )
    lower_is_better = column.endswith("loss") or column == "duration_s"
    frame = frame.sort_values(column, ascending=lower_is_better, na_position="last", kind="stable")
    comparisons = None
    if args.baseline:
        if args.baseline not in set(frame["group"]):
            raise UserError(
                f"--baseline {args.baseline}: no such experiment; choose from {', '.join(frame['group'].unique())}"
            )
        comparisons = analysis.compare_with_baseline(frame, args.runs_dir, args.baseline, split)
        if comparisons.empty:
            comparisons = None  # nothing to pair (no saved predictions): the plain difference only
    classes = results.class_names(frame, split)
    repeats = analysis.has_repeats(frame)
    # with repeats the seed is what varies inside a group, not a knob that tells groups apart
    hyperparameters = [k for k in results.varying_hyperparameters(frame) if not (repeats and k == analysis.SEED_COLUMN)]
    # a terminal table of a thousand rows helps nobody and takes seconds to lay out: the best few, the rest counted
    top = None if args.all else (args.top or COMPARE_TOP)
    if args.per_class:
        table = frame
        print(per_class_table(frame.head(top), split=split, classes=classes))
    elif repeats:
        # seeds are repeats, not rivals: rank the groups by their mean
        summary = analysis.summarize_repeats(frame, split).sort_values("macro_f1/mean", ascending=False, kind="stable")
        table = leaderboard.repeats_table(
            summary,
            split=split,
            classes=classes,
            baseline=args.baseline,
            hyperparameters=frame.groupby("group", sort=False)[hyperparameters].first(),
            comparisons=comparisons,
        )
        print(repeats_table(table.head(top), split=split, classes=classes, baseline=args.baseline))
    else:
        baseline = None
        if args.baseline and comparisons is None:
            baseline = (args.baseline, float(frame.loc[frame["group"] == args.baseline, f"{split}/macro_f1"].iloc[0]))
        table = leaderboard.experiments_table(
            frame,
            split=split,
            hyperparameters=hyperparameters,
            classes=classes,
            baseline=baseline,
            comparisons=comparisons,
        )
        print(compare_table(table.head(top), split=split, sort=column, classes=classes, baseline=args.baseline))
    _print_left_out(len(table) - len(table.head(top)), "experiments", args)
    # the files hold every row of the table, not only the ones the terminal had room for
    if args.export:
        print(
            f"wrote {results.write_table(table, args.export)}: the table above, every row and column ({len(table)} rows)"
        )
    if args.export_runs:
        runs = frame[frame["group"].isin(table["experiment"])] if repeats and not args.per_class else frame
        print(
            f"wrote {results.write_table(runs, args.export_runs)}: one row per run ({len(runs)} rows, {len(runs.columns)} columns)"
        )
    return 0


def _print_left_out(count: int, what: str, args: argparse.Namespace) -> None:
    if count > 0:
        print(
            f"... and {count} more {what} (--top N or --all shows them; every row is in "
            f"{args.runs_dir / 'results.csv'}, or --export FILE)"
        )


def cmd_report(args: argparse.Namespace) -> int:
    from raytrain.report import write_report

    out = write_report(args.runs_dir, args.out or args.runs_dir / "report.html", top=args.top, detail=args.detail)
    print(f"wrote {out} and {out.with_suffix('.csv')} (every row)")
    return 0


DEMO_CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "demo"


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

    report = check_dataset(args.root, channels=args.channels)
    print(report.format())
    return 0 if report.ok else 1  # problems found: usable data, but a script should notice


def cmd_predict(args: argparse.Namespace) -> int:
    from raytrain.training.predict import predict

    for path, ranked in zip(args.images, predict(args.weights, args.images)):
        shown = ", ".join(f"{name} {probability:.1%}" for name, probability in ranked[: max(1, args.top)])
        print(f"{path}: {shown}")
    return 0


# --- errors ----------------------------------------------------------------------------------------


def _problem_list(problems: list[str]) -> str:
    if len(problems) == 1:
        return problems[0]
    return f"{len(problems)} problems:\n" + "\n".join(f"  {p}" for p in problems)
