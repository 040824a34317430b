"""Command line: argparse verbs (`parser`) that call the package's functions (`commands`).

Every user error (ConfigError, DatasetError, ...) becomes one message on stderr and exit code 2, with
no traceback; anything else is a bug and keeps its traceback. A damaged file under runs/ is one
`warning:` line on stderr, once, and the command goes on. The CLI may import any package, but
only inside the verb that needs it, so `raytrain validate` loads no Ray and `compare` no pydantic.
"""

from __future__ import annotations

import sys
import warnings
from contextlib import contextmanager

from raytrain import trace
from raytrain.cli.parser import build_parser
from raytrain.errors import EXIT_USER_ERROR, UserError


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


def _problem_list(problems: list[str]) -> str:
    if len(problems) == 1:
        return problems[0]
    return f"{len(problems)} problems:\n" + "\n".join(f"  {p}" for p in problems)
