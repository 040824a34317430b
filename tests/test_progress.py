"""The sweep's status line: its arithmetic (counts, best, ETA) and how it stays at the bottom of a
terminal while other lines scroll above it. The real sweeps in test_resume check the plain-text
form a log file gets."""

from __future__ import annotations

import io
import sys

import pytest

from raytrain.sweeps.progress import (
    CLEAR_LINE,
    StatusLineOutput,
    TrialState,
    counting_started_as_running,
    sweep_status,
)


def state(name, status, done, planned=4, seconds_per_epoch=10.0, best=None, cpu=1.0, gpu=0.0) -> TrialState:
    return TrialState(name, status, done, planned, done * seconds_per_epoch, best, cpu, gpu)


def test_counts_best_and_an_eta_from_the_epochs_left_and_the_epoch_times():
    trials = [
        state("a", "TERMINATED", 4, best=0.5),
        state("b", "RUNNING", 1, best=0.7),
        state("c", "RUNNING", 3, seconds_per_epoch=20.0, best=0.6),
        state("d", "ERROR", 2, best=0.9),
        state("e", "PENDING", 0),
    ]
    status = sweep_status(trials, planned=7, epochs_per_unproposed=4)
    assert (status.running, status.done, status.failed) == (2, 1, 1)
    assert status.pending == 1 + 2, "one waiting for resources and two a searcher has not proposed yet"
    assert status.best == ("d", 0.9)
    assert status.epochs_done == 4 + 1 + 3 + 2
    assert status.epochs_left == (4 - 1) + (4 - 3) + 4 + 2 * 4, "failed and finished trials have none left"
    mean_epoch = (10 + 20 + 10 + 10) / 4
    assert status.eta_s == pytest.approx(status.epochs_left * mean_epoch / 2), "shared by the two running trials"
    line = status.line(elapsed_s=125)
    assert line.startswith(
        "trials: 2 running, 1 done, 3 pending, 1 failed | best 0.900 (d) | epochs 10/26 | 2 min 05 s elapsed, ETA ≤ "
    )


def test_before_any_epoch_there_is_no_eta_and_at_the_end_it_says_so():
    starting = sweep_status([state("a", "RUNNING", 0)], planned=1, epochs_per_unproposed=4)
    assert starting.eta_s is None and "best - " in starting.line(3) and "ETA -" in starting.line(3)
    ended = sweep_status([state("a", "TERMINATED", 4, best=0.4)], planned=1, epochs_per_unproposed=4)
    assert ended.line(60).endswith("1 min 00 s elapsed, ended")


def test_a_trial_whose_process_is_starting_counts_as_running_not_pending():
    # two CPUs, one-CPU trials: Tune starts b while a runs; b is PENDING until its process is up
    trials = [state("a", "RUNNING", 0), state("b", "PENDING", 0), state("c", "PENDING", 0)]
    status = sweep_status(counting_started_as_running(trials, {"CPU": 2.0}), planned=3, epochs_per_unproposed=1)
    assert (status.running, status.pending) == (2, 1), "c waits for a CPU; b is being started"
    # the ETA is shared by the two that run
    timed = [state("a", "RUNNING", 1), state("b", "PENDING", 0), state("d", "TERMINATED", 1)]
    eta = sweep_status(counting_started_as_running(timed, {"CPU": 2.0}), planned=3, epochs_per_unproposed=1).eta_s
    assert eta == pytest.approx((3 + 4) * 10.0 / 2), "the epochs left of a and b, at 10 s each, two at a time"


def test_started_trials_respect_gpus_fractions_and_the_concurrency_limit():
    packed = [state(n, "PENDING", 0, cpu=0.6) for n in "abcd"]
    assert [t.status for t in counting_started_as_running(packed, {"CPU": 1.8})] == ["RUNNING"] * 3 + ["PENDING"]
    assert [t.status for t in counting_started_as_running(packed, {"CPU": 2.0}, max_concurrent=2)].count("RUNNING") == 2
    gpu = [state("a", "RUNNING", 1, gpu=1.0), state("b", "PENDING", 0, gpu=1.0)]
    assert counting_started_as_running(gpu, {"CPU": 16.0, "GPU": 1.0})[1].status == "PENDING", "the GPU is taken"
    failed = [state("a", "ERROR", 1), state("b", "PENDING", 0)]
    assert counting_started_as_running(failed, {"CPU": 1.0})[1].status == "RUNNING", "a failed trial frees its CPU"


def test_a_population_member_paused_to_copy_another_counts_as_running_where_there_is_room_for_it():
    # PBT stops a member at a decision and starts it again at once; with four members on two CPUs,
    # the two paused beside the running one wait for a turn
    trials = [state("a", "PAUSED", 2), state("b", "RUNNING", 3), state("c", "PAUSED", 2), state("d", "PAUSED", 2)]
    status = sweep_status(counting_started_as_running(trials, {"CPU": 2.0}), planned=4, epochs_per_unproposed=4)
    assert (status.running, status.pending) == (2, 2)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_status_line_stays_below_whatever_is_printed(monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    monkeypatch.setenv("COLUMNS", "60")
    shown = StatusLineOutput.install()
    assert sys.stdout is shown and StatusLineOutput.install() is shown, "installed once"
    shown.set_status("trials: 1 running")
    print("[a] epoch 1/2")
    shown.set_status("trials: 0 running, 1 done " + "x" * 80)
    StatusLineOutput.uninstall()
    assert sys.stdout is terminal
    StatusLineOutput.uninstall()  # a second call (the sweep's `finally`) is harmless
    text = terminal.getvalue()
    # what the terminal shows once every erase is applied: the printed line, then nothing left over
    screen = [part.rsplit(CLEAR_LINE, 1)[-1] for part in text.split("\n")]
    assert screen == ["[a] epoch 1/2", ""]
    assert "trials: 1 running" + CLEAR_LINE + "[a] epoch 1/2\ntrials: 1 running" in text, "erased, printed, redrawn"
    longest = max(len(part) for chunk in text.split("\n") for part in chunk.split(CLEAR_LINE))
    assert longest <= 60, "a status wider than the terminal is cut, or it would wrap and not be erased"
