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
    parser = argparse.ArgumentParser(prog="raytrain", description=__doc__.splitlines()[0])
    verbs = parser.add_subparsers(title="commands", metavar="COMMAND")

    validate = verbs.add_parser("validate", help="check configs and print their resolved form")
    validate.add_argument("configs", nargs="+", metavar="CONFIG", help="YAML config files")
    _add_set_option(validate)
    validate.set_defaults(handler=cmd_validate)
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


# --- errors ----------------------------------------------------------------------------------------


def _problem_list(problems: list[str]) -> str:
    if len(problems) == 1:
        return problems[0]
    return f"{len(problems)} problems:\n" + "\n".join(f"  {p}" for p in problems)

