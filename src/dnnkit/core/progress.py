"""Progress bars (rich) for experiments and the CLI; silent when not a TTY or when disabled.

Library algorithm code does not draw bars; it accepts an optional ``progress`` callable or
iterates through :func:`track` with ``enabled=False`` by default.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

__all__ = ["track", "progress_enabled"]


def progress_enabled(requested: bool | None = None) -> bool:
    """``None`` means: on when stderr is a terminal."""
    if requested is None:
        return sys.stderr.isatty()
    return bool(requested)


def track(
    iterable: Iterable[T],
    *,
    description: str = "",
    total: int | None = None,
    enabled: bool | None = None,
) -> Iterator[T]:
    """Iterate with a rich progress bar when enabled (default: only on a TTY)."""
    if not progress_enabled(enabled):
        yield from iterable
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(), transient=True) as bar:
        task = bar.add_task(description, total=total)
        for item in iterable:
            yield item
            bar.advance(task)
