"""Progress bars for long loops that leave one summary line behind.

Used in chapters: 03, 08; imported by ``lmcourse.models.bert``, ``lmcourse.models.detector``,
``lmcourse.multitask``, ``lmcourse.recsys``, ``lmcourse.training``.

:func:`progress` wraps an iterable (or a manual count) in a `tqdm <https://tqdm.github.io>`_ bar
and prints ONE summary line when the work ends, e.g.
``train: 76,800 img (600 steps) in 16.5 s, 4,660 img/s, final loss 0.081``.

Where the bar is drawn:

* **Jupyter kernel** (JupyterLab, Notebook, VS Code) with ``ipywidgets``: a live
  ``tqdm.notebook`` widget, displayed under a display handle. On close the handle is updated to
  the summary line and the widget models are closed, so the cell keeps only the summary line,
  live and in a notebook saved by nbclient (no ``application/vnd.jupyter.widget-view+json``
  output, no half-drawn bar text).
* **Terminal**: a text bar on stderr (from 2 s on, refreshed at most every 0.5 s), erased
  when done.
* **Not a terminal** (CI logs, ``python script.py > log``): a text bar refreshed at most every
  30 s (``NON_TTY_INTERVAL_S``), so a log never floods.
* ``LMCOURSE_PROGRESS=0`` in the environment: no bars anywhere; summary lines are still printed.
  Batch runners that save notebooks (``tools/run_course.py``) set it, so that no widget state
  is stored in the notebook's metadata either.

``progress(..., enabled=False)`` (what a training function's ``progress=False`` passes) is
silent: no bar and no summary line.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from tqdm.std import tqdm as text_tqdm

T = TypeVar("T")

ENV_VAR = "LMCOURSE_PROGRESS"
TTY_INTERVAL_S = 0.5
NON_TTY_INTERVAL_S = 30.0
TEXT_DELAY_S = 2.0  # text bars appear only for loops longer than this


def bars_enabled() -> bool:
    """Whether bars are drawn, read from ``LMCOURSE_PROGRESS`` (unset, ``1``: yes; ``0``: no).

    Raises:
        ValueError: the variable holds anything else.
    """
    value = os.environ.get(ENV_VAR, "1").strip().lower()
    if value in ("1", "true", "yes", "on", ""):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{ENV_VAR}={value!r} is not understood: set it to 0 (no progress bars) "
                     "or 1 (bars), or unset it")


def in_jupyter_kernel() -> bool:
    """True inside a Jupyter (ipykernel) kernel, False in a terminal IPython or plain Python."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def format_value(value: Any) -> str:
    """Compact text for a postfix value: floats with 4 significant digits, others via ``str``."""
    if isinstance(value, bool | str):
        return str(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if not math.isfinite(number):
        return str(number)
    return f"{number:.4g}"


class Progress:
    """A bar over ``total`` units (images, tokens, sentences, …) with a one-line summary.

    Use :func:`progress` to make one. Iterate over it (each item counts one unit unless you call
    :meth:`update` yourself inside the loop), or call :meth:`update` by hand; set the values a
    practitioner watches with :meth:`set` (``loss=0.08``); :meth:`close` (or the end of the loop,
    or leaving a ``with`` block) erases the bar and prints the summary line.

    Attributes:
        n: units counted so far; ``steps``: calls to :meth:`update` (batches) so far.
        postfix: the last values given to :meth:`set` (reported as "final" in the summary).
        elapsed: seconds since the bar was made (wall clock).
    """

    def __init__(self, iterable: Iterable[T] | None = None, *, total: int | None = None,
                 desc: str = "work", unit: str = "it", enabled: bool = True,
                 summary: bool = True):
        if total is None and iterable is not None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except TypeError:
                total = None
        if total is not None and total < 0:
            raise ValueError(f"total must be >= 0 (a count of {unit}), got {total}")
        self.iterable = iterable
        self.total = total
        self.desc, self.unit = desc, unit
        self.enabled = enabled
        self.summary_enabled = summary and enabled
        self.n = 0
        self.steps = 0
        self.postfix: dict[str, Any] = {}
        self.closed = False
        self.failed = False
        self._manual = False
        self._start = time.perf_counter()
        self._bar: Any = None
        self._handle: Any = None
        if enabled and bars_enabled():
            self._bar, self._handle = _make_bar(total, desc, unit)

    # ------------------------------------------------------------------ counting
    @property
    def elapsed(self) -> float:
        """Seconds since the bar was made."""
        return time.perf_counter() - self._start

    def update(self, n: int = 1, **postfix: Any) -> None:
        """Count ``n`` more units (one step) and optionally set postfix values (see :meth:`set`).

        Raises:
            ValueError: ``n < 0`` (a bar counts work done; it cannot go back).
        """
        if n < 0:
            raise ValueError(f"update counts units done and cannot go back: got n={n}")
        self._manual = True
        self.n += n
        self.steps += 1
        if postfix:
            self.set(**postfix)
        if self._bar is not None:
            self._bar.update(n)

    def set(self, **values: Any) -> None:
        """Show ``values`` (e.g. ``loss=0.0812, epoch="2/3"``) next to the rate and ETA."""
        self.postfix.update(values)
        if self._bar is not None:
            self._bar.set_postfix({k: format_value(v) for k, v in self.postfix.items()},
                                  refresh=False)

    def __iter__(self) -> Iterator[T]:
        if self.iterable is None:
            raise TypeError("this Progress counts by hand (no iterable): call update() instead")
        try:
            for item in self.iterable:
                counted = self.n
                yield item
                if not self._manual and self.n == counted:
                    self.n += 1
                    self.steps += 1
                    if self._bar is not None:
                        self._bar.update(1)
        except BaseException:
            self.failed = True
            self.close()
            raise
        self.close()

    # ------------------------------------------------------------------ the end
    def summary(self) -> str:
        """The one-line summary, e.g. ``train: 600 steps in 16.5 s, 4,660 img/s, final loss 0.081``."""
        seconds = self.elapsed
        done = f"{self.n:,} {self.unit}"
        if self.failed and self.total is not None:
            done = f"stopped after {self.n:,} of {self.total:,} {self.unit}"
        elif self.failed:
            done = f"stopped after {done}"
        if self.steps and self.steps != self.n:
            done += f" ({self.steps:,} step{'' if self.steps == 1 else 's'})"
        text = f"{self.desc}: {done} in {seconds:.1f} s"
        if seconds > 0 and self.n:
            rate = self.n / seconds
            if rate >= 10:
                text += f", {rate:,.0f} {self.unit}/s"
            elif rate >= 1:
                text += f", {rate:.2g} {self.unit}/s"
            else:   # slow units (whole runs, settings): the time each one took reads better
                text += f", {seconds / self.n:.3g} s per {self.unit.rstrip('s') or self.unit}"
        if self.postfix:
            text += ", final " + ", ".join(f"{k} {format_value(v)}" for k, v in self.postfix.items())
        return text

    def close(self, summary: str | None = None) -> None:
        """Erase the bar and print the summary line (``summary`` replaces the default text).

        Idempotent: a second call does nothing.
        """
        if self.closed:
            return
        self.closed = True
        text = summary if summary is not None else self.summary()
        if self._bar is not None:
            _close_bar(self._bar, self._handle, text if self.summary_enabled else "")
            if self._handle is not None:
                return  # the display handle now shows the summary line
        if self.summary_enabled:
            print(text, flush=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.failed = True
        self.close()


def progress(iterable: Iterable[T] | None = None, *, total: int | None = None, desc: str = "work",
             unit: str = "it", enabled: bool = True, summary: bool = True) -> Progress:
    """A progress bar for a loop that may run longer than ~10 s, ending in one summary line.

    Args:
        iterable: what to loop over (each item counts one ``unit``), or ``None`` to count by
            hand with :meth:`Progress.update` (e.g. ``update(len(batch))`` to count images).
        total: units expected (for the percentage and ETA); ``len(iterable)`` when omitted.
        desc: short name shown before the bar and the summary (``"train"``, ``"encode"``).
        unit: what is counted, singular (``"img"``, ``"tok"``, ``"sentence"``); the rate is
            shown as ``unit/s``.
        enabled: False makes it silent (no bar, no summary); ``LMCOURSE_PROGRESS=0`` removes
            only the bar.
        summary: False keeps the bar but prints no summary line.

    Returns:
        a :class:`Progress` (iterable, context manager).

    Raises:
        ValueError: ``total`` is negative, or ``LMCOURSE_PROGRESS`` holds neither 0 nor 1.

    Source: tqdm's notebook and text bars (https://tqdm.github.io); the display-handle update
    that replaces the bar by its summary follows IPython's ``display(..., display_id=True)``.
    """
    return Progress(iterable, total=total, desc=desc, unit=unit, enabled=enabled,
                    summary=summary)


def _make_bar(total: int | None, desc: str, unit: str) -> tuple[Any, Any]:
    """(tqdm bar, display handle or None) for where the code runs (see the module docstring)."""
    scale = total is None or total >= 10_000  # 76.8k/300k rather than 76800/300000
    if in_jupyter_kernel():
        try:
            from IPython.display import display
            from tqdm.notebook import tqdm as notebook_tqdm

            bar = notebook_tqdm(total=total, desc=desc, unit=unit, unit_scale=scale, leave=False,
                                display=False, mininterval=TTY_INTERVAL_S)
            handle = display(bar.container, display_id=True)
            bar.displayed = True
            return bar, handle
        except ImportError:  # no ipywidgets: no live bar, the summary line still comes
            return None, None
    stream = sys.stderr
    interactive = hasattr(stream, "isatty") and stream.isatty()
    bar = text_tqdm(total=total, desc=desc, unit=unit, unit_scale=scale, leave=False, file=stream,
                    mininterval=TTY_INTERVAL_S if interactive else NON_TTY_INTERVAL_S,
                    delay=TEXT_DELAY_S, dynamic_ncols=interactive)
    return bar, None


def _close_bar(bar: Any, handle: Any, text: str) -> None:
    """Close ``bar``; in a notebook, replace its display by ``text`` and free its widgets."""
    if handle is None:
        bar.close()
        return
    bar.close()
    handle.update({"text/plain": text}, raw=True)
    container = bar.container
    widgets = [container, *container.children]
    for widget in list(widgets):
        for part in ("layout", "style"):
            sub = getattr(widget, part, None)
            if sub is not None:
                widgets.append(sub)
    for widget in widgets:
        widget.close()
