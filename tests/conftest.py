"""Shared fixtures: the project's paths and a way to run the CLI in-process and read what it said."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from raytrain.cli import main

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONFIGS_DIR = PROJECT_ROOT / "configs"


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def run_cli(capsys):
    """Run `raytrain ARGS...` in this process; returns its exit code, stdout and stderr."""

    def run(*args: str) -> CliResult:
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run
