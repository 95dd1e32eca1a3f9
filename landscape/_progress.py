"""Progress of long work that shows anywhere: a tqdm bar on a terminal, a short line at a steady interval elsewhere.

A run logged to a file (a cluster job) gets no bar, whose carriage returns would fill the log, but a line
such as ``string: 37/120 (31%), 42 s elapsed, ~71 s left`` every :data:`DEFAULT_INTERVAL` seconds
(``NEEDLE_PROGRESS_INTERVAL`` overrides it, 0 prints at every step). Every probe, path and training
loop that shows progress goes through :class:`Progress`, so all of them behave alike; a disabled one
(the CLIs' ``--quiet``) prints nothing.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Iterable, Iterator
from typing import IO, Any, TypeVar

from tqdm.auto import tqdm

__all__ = ["DEFAULT_INTERVAL", "INTERVAL_VARIABLE", "Progress", "progress_interval", "track"]

T = TypeVar("T")

DEFAULT_INTERVAL = 30.0
"""Seconds between progress lines when stderr is not a terminal: often enough to see a job move, rarely
enough that an hour's log holds 120 lines."""

INTERVAL_VARIABLE = "NEEDLE_PROGRESS_INTERVAL"
"""Environment variable overriding :data:`DEFAULT_INTERVAL` (seconds, >= 0)."""


def progress_interval() -> float:
    """Seconds between progress lines: ``$NEEDLE_PROGRESS_INTERVAL``, else :data:`DEFAULT_INTERVAL`.

    A value that is not a number >= 0 is named in a warning and the default used: a typo in a job
    script should not stop the job.
    """
    text = os.environ.get(INTERVAL_VARIABLE)
    if text is None or not text.strip():
        return DEFAULT_INTERVAL
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        warnings.warn(f"{INTERVAL_VARIABLE}={text!r} is not a number of seconds >= 0; progress lines every {DEFAULT_INTERVAL:g} s "
                      "instead (set it to e.g. 30, or unset it)", stacklevel=2)
        return DEFAULT_INTERVAL
    return value


def _seconds(value: float) -> str:
    """``42 s``, ``3.5 min`` or ``1.2 h``."""
    if value < 120:
        return f"{value:.0f} s"
    return f"{value / 60:.1f} min" if value < 7200 else f"{value / 3600:.1f} h"


class Progress:
    """Progress over ``total`` steps: ``update(n)``, ``set_postfix_str``/``set_postfix``, ``close()`` (or a ``with`` block).

    Args:
        total: steps of the work (``None`` when unknown: no percentage or estimate).
        desc: what is being done, the line's first word.
        enabled: ``False`` shows nothing (``--quiet``).
        interval: seconds between lines off a terminal (default :func:`progress_interval`).
        stream: where to write (default ``sys.stderr`` at construction).
        leave: keep the terminal bar once done.
        initial: steps already done (a resumed run).

    Example:
        >>> import io
        >>> out = io.StringIO()
        >>> with Progress(4, desc="probe", interval=0, stream=out) as bar:
        ...     bar.update(1)
        >>> out.getvalue().splitlines()[0].startswith("probe: 1/4 (25%), 0 s elapsed")
        True
    """

    def __init__(self, total: int | None, *, desc: str, enabled: bool = True, interval: float | None = None,
                 stream: IO[str] | None = None, leave: bool = True, initial: int = 0) -> None:
        self.total, self.desc, self.n = total, desc, initial
        self._stream = sys.stderr if stream is None else stream
        self._interval = progress_interval() if interval is None else float(interval)
        self._lines = enabled and not _is_terminal(self._stream)
        self._bar = tqdm(total=total, desc=desc, initial=initial, leave=leave, dynamic_ncols=True, file=self._stream) \
            if enabled and not self._lines else None
        self._start = self._last = time.perf_counter()
        self._printed = initial
        self._initial = initial
        self._postfix = ""

    def update(self, n: int = 1) -> None:
        """``n`` more steps done; off a terminal, a line once ``interval`` seconds have passed since the last."""
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
        elif self._lines and time.perf_counter() - self._last >= self._interval:
            self._print()

    def set_postfix_str(self, text: str) -> None:
        """What is being worked on now (e.g. a checkpoint's name), shown after the counts."""
        self._postfix = text
        if self._bar is not None:
            self._bar.set_postfix_str(text)

    def set_postfix(self, **values: Any) -> None:
        """Named values (e.g. ``loss=0.31``), shown after the counts."""
        self.set_postfix_str(", ".join(f"{key}={value}" for key, value in values.items()))

    def line(self) -> str:
        """``desc: n/total (p%), s elapsed, ~s left [postfix]`` (the estimate from the pace of this run's own steps)."""
        elapsed = time.perf_counter() - self._start
        text = f"{self.desc}: {self.n}"
        if self.total:
            text += f"/{self.total} ({100 * self.n / self.total:.0f}%)"
        text += f", {_seconds(elapsed)} elapsed"
        done = self.n - self._initial
        if self.total and 0 < done and self.n < self.total:
            text += f", ~{_seconds(elapsed / done * (self.total - self.n))} left"
        return text + (f" [{self._postfix}]" if self._postfix else "")

    def _print(self) -> None:
        print(self.line(), file=self._stream, flush=True)
        self._last, self._printed = time.perf_counter(), self.n

    def close(self) -> None:
        """End the bar; off a terminal, a last line when the work outlasted one interval and moved since the last line."""
        if self._bar is not None:
            self._bar.close()
        elif self._lines and self.n != self._printed and time.perf_counter() - self._start >= self._interval:
            self._print()
        self._lines, self._bar = False, None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _is_terminal(stream: IO[str]) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def track(iterable: Iterable[T], *, desc: str, enabled: bool = True, total: int | None = None, leave: bool = True) -> Iterator[T]:
    """Iterate over ``iterable`` showing :class:`Progress` (``total`` defaults to its ``len``).

    Example:
        >>> list(track(range(3), desc="points", enabled=False))
        [0, 1, 2]
    """
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    with Progress(total, desc=desc, enabled=enabled, leave=leave) as bar:
        for item in iterable:
            yield item
            bar.update(1)
