"""How the page writes a length of time: one format for an ETA, a run's duration and a progress line."""

from __future__ import annotations


def format_duration(seconds: float | None) -> str:
    """`4 min 05 s`, or `1 h 05 min` from an hour on; `–` when not known (yet).

    The Dataset tab's browser test reads its ETA as `\\d+ min`, so minutes are always written.
    """
    if seconds is None:
        return "–"
    seconds = int(seconds)
    hours, minutes = divmod(seconds // 60, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {seconds % 60:02d} s"
