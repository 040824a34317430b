"""How raytrain writes a duration for people: one format for the status line, the compare table and
the report, so the same 150 s never reads "2.5 min" in one place and "2m30s" in another.
Standard library only: the driver, the readers and the CLI all use it.
"""

from __future__ import annotations


def format_duration(seconds: float) -> str:
    """42 s, 2 min 30 s, 1 h 05 min: whole units, the smaller one zero-padded so columns line up."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
