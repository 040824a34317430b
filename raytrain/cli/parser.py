"""The command line's grammar: one argparse sub-parser per verb, each naming the function in
`commands` that runs it, and the argument types that turn bad values into one clear message.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from raytrain.cli.commands import (
    COMPARE_TOP,
    cmd_compare,
    cmd_data_check,
    cmd_data_synth,
    cmd_demo,
    cmd_importance,
    cmd_predict,
    cmd_report,
    cmd_resume,
    cmd_run,
    cmd_submit,
    cmd_sweep,
    cmd_validate,
)
from raytrain.errors import EXIT_USER_ERROR


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
    compare.add_argument(
        "--filter",
        metavar="PREFIX",
        help="only experiments whose name starts with PREFIX; data=FINGERPRINT: only runs trained on that data",
    )
    compare.add_argument(
        "--export",
        type=_table_file,
        metavar="FILE",
        help="also write the rows shown (every one) with every config key and every metric of the split "
        "(per class: precision, recall, F1, support), to FILE.csv or FILE.parquet",
    )
    compare.add_argument(
        "--export-runs",
        type=_table_file,
        metavar="FILE",
        help="also write one row per run (every seed), every column, to FILE.csv or FILE.parquet",
    )
    compare.set_defaults(handler=cmd_compare)

    _add_importance_parser(verbs)

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
        help="experiments drawn with learning curves and per-class F1 (default 10); "
        "confusion matrices for up to 6 of them",
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
    check.add_argument("root", metavar="DATA", help="a data root, in any layout `run` takes")
    check.add_argument("--channels", type=int, choices=(1, 3), default=1)
    check.add_argument(
        "--class-names",
        type=lambda text: [name.strip() for name in text.split(",")],
        metavar="NAME,NAME,...",
        help="names of numbered class folders 0, 1, ... as data.class_names gives them (default: AffectNet's order)",
    )
    check.add_argument(
        "--duplicates-sheet", type=Path, metavar="PNG", help="draw the example duplicate pairs side by side into PNG"
    )
    check.add_argument("--force", action="store_true", help="replace an existing --duplicates-sheet file")
    check.set_defaults(handler=cmd_data_check)

    predict = verbs.add_parser("predict", help="classify images with a trained best.pt")
    predict.add_argument("weights", metavar="BEST_PT", help="runs/<experiment>/best.pt")
    predict.add_argument("images", nargs="+", metavar="IMAGE")
    predict.add_argument("--top", type=int, default=3, help="how many classes to show per image (default 3)")
    predict.set_defaults(handler=cmd_predict)
    return parser


def _add_importance_parser(verbs) -> None:
    importance = verbs.add_parser(
        "importance", help="which knobs mattered: each one's share of the metric's variance, with its interval"
    )
    importance.add_argument("--runs-dir", type=Path, default=Path("runs"))
    importance.add_argument(
        "--filter", metavar="PREFIX", help="only experiments whose name starts with PREFIX (one sweep or search)"
    )
    importance.add_argument("--split", choices=("val", "test"), help="which split's metric (default val)")
    importance.add_argument("--metric", metavar="METRIC", help="e.g. macro_f1 (default), accuracy, val/f1/happy")
    importance.add_argument(
        "--export",
        type=_table_file,
        metavar="FILE",
        help="also write the table, every column, to FILE.csv or FILE.parquet",
    )
    importance.set_defaults(handler=cmd_importance)


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-root",
        "--data_root",
        dest="data_root",
        type=Path,
        help="a dataset: class folders, a FER2013 csv, FER+, RAF-DB or a manifest csv",
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
        help="overrides training.precision (auto: bf16 on GPUs and on CPUs where it times faster; "
        "bf16 or fp32 force one)",
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
