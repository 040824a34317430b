"""Command line: argparse verbs that call the package's functions.

Every user error (ConfigError, DatasetError, ...) becomes one message on stderr and exit code 2, with
no traceback; anything else is a bug and keeps its traceback. Heavy imports happen inside the verbs
so `raytrain validate` stays fast.
"""

from __future__ import annotations

import argparse
import sys

from raytrain.config import ConfigError, config_hash, load_config, to_yaml
from raytrain.errors import UserError

EXIT_USER_ERROR = 2


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return EXIT_USER_ERROR
    try:
        return args.handler(args) or 0
    except ConfigError as err:
        print(f"error: {_problem_list(err.problems)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="raytrain", description="Run and compare image-classification experiments as Ray Tune sweeps."
    )
    verbs = parser.add_subparsers(title="commands", metavar="COMMAND")

    validate = verbs.add_parser("validate", help="check configs and print their resolved form")
    validate.add_argument("configs", nargs="+", metavar="CONFIG", help="YAML config files")
    _add_set_option(validate)
    validate.set_defaults(handler=cmd_validate)

    data_parser = verbs.add_parser("data", help="make or inspect a dataset")
    data_parser.set_defaults(handler=lambda _: data_parser.print_help() or EXIT_USER_ERROR)
    data = data_parser.add_subparsers(title="data commands", metavar="COMMAND")
    synth = data.add_parser("synth", help="write a synthetic FER-like dataset (procedural faces)")
    synth.add_argument("out", metavar="OUT", help="a new or empty folder")
    synth.add_argument("--layout", choices=("folders", "csv"), default="folders", help="image folders or one fer2013.csv")
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


def _add_set_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override one config value by its dotted path, e.g. --set training.lr=0.001 (repeatable)",
    )


# --- verbs -----------------------------------------------------------------------------------------


def cmd_validate(args: argparse.Namespace) -> int:
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
    from raytrain.predict import predict

    for path, ranked in zip(args.images, predict(args.weights, args.images)):
        shown = ", ".join(f"{name} {probability:.1%}" for name, probability in ranked[: max(1, args.top)])
        print(f"{path}: {shown}")
    return 0


# --- errors ----------------------------------------------------------------------------------------


def _problem_list(problems: list[str]) -> str:
    if len(problems) == 1:
        return problems[0]
    return f"{len(problems)} problems:\n" + "\n".join(f"  {p}" for p in problems)

