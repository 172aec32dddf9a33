"""Figures people can read: a colour-blind-safe style and a checker for unlabelled plots.

Used in chapters: none directly; imported by ``lmcourse.config``.

* :data:`OKABE_ITO` is the colour cycle of every line, bar and scatter after
  :func:`apply_style` (which :func:`lmcourse.config.setup_notebook` calls): the eight colours of
  Okabe & Ito, *Color Universal Design* (2002/2008), as recommended by B. Wong, "Points of view:
  Color blindness", *Nature Methods* 8, 441 (2011), distinguishable under the common forms of
  colour blindness (protanopia, deuteranopia, tritanopia). Continuous maps keep matplotlib's
  default ``viridis``, which is perceptually uniform and colour-blind safe.
* :func:`check_figure` lists what a reader would miss: an axes without x or y label (images
  are exempt), a plot without a title, several labelled series without a legend, a colour bar
  without a label.
* :func:`register_figure_hook` (also called by ``setup_notebook`` inside IPython/Jupyter)
  checks every figure a cell made, after the cell, and prints one ``FIGURE CHECK: …`` line per
  problem, so an unlabelled plot is seen when it is written, not by the reader.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import Any

#: Okabe–Ito colours (Wong 2011, Nature Methods 8:441), ordered so that the first series get the
#: most distinct colours on white: blue, vermillion, bluish green, reddish purple, orange, sky
#: blue, black, yellow (yellow last: it is faint on a white background).
OKABE_ITO: tuple[str, ...] = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00",
                              "#56B4E9", "#000000", "#F0E442")
PREFIX = "FIGURE CHECK"
_HOOK = "lmcourse.plotting:track_figure"
_cell_figures: weakref.WeakSet = weakref.WeakSet()   # figures made since the last check
_reported: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # figure → problems printed


def style() -> dict[str, Any]:
    """The rcParams :func:`apply_style` sets: the Okabe–Ito cycle, viridis, a readable size."""
    from cycler import cycler

    return {"axes.prop_cycle": cycler(color=list(OKABE_ITO)),
            "image.cmap": "viridis",
            "axes.titlesize": "medium",
            "axes.grid": False,
            "legend.frameon": True}


def apply_style() -> None:
    """Make :data:`OKABE_ITO` the default colour cycle and make pyplot track new figures.

    Figures made by ``pyplot`` afterwards are remembered (through matplotlib's documented
    ``figure.hooks`` rcParam) so that :func:`check_cell_figures` can check them even after the
    inline backend has shown and closed them.
    """
    import matplotlib as mpl

    mpl.rcParams.update(style())
    hooks = list(mpl.rcParams["figure.hooks"])
    if _HOOK not in hooks:
        mpl.rcParams["figure.hooks"] = [*hooks, _HOOK]


def track_figure(fig: Any) -> None:
    """``figure.hooks`` entry: remember ``fig`` (weakly) for the next :func:`check_cell_figures`."""
    _cell_figures.add(fig)


def _has_content(ax: Any) -> bool:
    return bool(ax.lines or ax.collections or ax.patches or ax.images or ax.texts or ax.tables
                or ax.artists)


def _siblings(ax: Any, which: str) -> list[Any]:
    group = ax.get_shared_x_axes() if which == "x" else ax.get_shared_y_axes()
    return list(group.get_siblings(ax))


def _legend_texts(fig: Any) -> set[str]:
    legends = [ax.get_legend() for ax in fig.axes] + list(fig.legends)
    return {text.get_text() for legend in legends if legend is not None
            for text in legend.get_texts()}


def _name(ax: Any, index: int, count: int) -> str:
    title = ax.get_title() or ax.get_title(loc="left") or ax.get_title(loc="right")
    where = f"axes {index + 1} of {count}" if count > 1 else "the axes"
    return f"{where} ({title!r})" if title else where


def check_figure(fig: Any) -> list[str]:
    """List what keeps a reader from understanding ``fig``; an empty list means none.

    Rules, per visible axes with something drawn on it:

    * an x label and a y label (with units, which no code can check): a label on the figure
      (``fig.supxlabel``) or on an axes sharing that axis (``sharex=True``, ``twinx``) counts;
      axes showing images (``imshow``, ``matshow``) or turned off (``ax.axis("off")``) need none;
    * a title on the axes, on its twin (``twinx``) or on the figure (``fig.suptitle``), saying
      what to see;
    * more than one labelled series (lines, scatter collections, bars) needs a legend showing
      those labels (on this axes, another axes, or the figure);
    * a colour bar needs a label (what the colour measures, with units).

    Args:
        fig: a ``matplotlib.figure.Figure``.

    Returns:
        one sentence per problem, e.g. ``"axes 2 of 3 ('loss'): no y label"``.

    Raises:
        TypeError: ``fig`` is not a matplotlib Figure (e.g. an Axes was passed).
    """
    from matplotlib.figure import Figure

    if not isinstance(fig, Figure):
        raise TypeError(f"check_figure needs a matplotlib Figure, got {type(fig).__name__}; "
                        f"for an Axes pass ax.figure")
    problems: list[str] = []
    fig_title = bool(fig.get_suptitle())
    fig_xlabel, fig_ylabel = bool(fig.get_supxlabel()), bool(fig.get_supylabel())
    legend_texts = _legend_texts(fig)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    plots = [ax for ax in axes if not hasattr(ax, "_colorbar")]
    for i, ax in enumerate(plots):
        name = _name(ax, i, len(plots))
        if not _has_content(ax):
            continue
        twins = [a for a in plots if a.get_position().bounds == ax.get_position().bounds]
        titled = any(a.get_title(loc=loc) for a in twins for loc in ("center", "left", "right"))
        if not (titled or fig_title):
            problems.append(f"{name}: no title (ax.set_title or fig.suptitle: say what to see)")
        if ax.axison and not ax.images:
            if not (fig_xlabel or any(a.get_xlabel() for a in _siblings(ax, "x"))):
                problems.append(f"{name}: no x label (ax.set_xlabel, with units)")
            if not (fig_ylabel or any(a.get_ylabel() for a in _siblings(ax, "y"))):
                problems.append(f"{name}: no y label (ax.set_ylabel, with units)")
        _, labels = ax.get_legend_handles_labels()
        if len(labels) > 1 and not set(labels) <= legend_texts:
            problems.append(f"{name}: {len(labels)} labelled series but no legend showing them "
                            f"(ax.legend())")
    for ax in axes:
        if hasattr(ax, "_colorbar"):
            colorbar = ax._colorbar
            label = colorbar.ax.get_ylabel() or colorbar.ax.get_xlabel()
            if not label:
                problems.append("a colour bar has no label (fig.colorbar(..., label=...), "
                                "with units)")
    return problems


def check_cell_figures(figures: Iterable[Any] | None = None) -> list[str]:
    """Check the figures made since the last call plus those still open; print and return lines.

    Each problem is printed once per figure as ``FIGURE CHECK: <figure>: <problem>``; a figure
    checked again with the same problems (still open in a later cell) prints nothing new.

    Args:
        figures: figures to check; default: those pyplot made since the last call (tracked by
            :func:`apply_style`) and every figure still open.

    Returns:
        the lines printed.
    """
    if figures is None:
        from matplotlib._pylab_helpers import Gcf  # pyplot's figure registry (no public list)

        figures = list(_cell_figures)
        figures += [m.canvas.figure for m in Gcf.get_all_fig_managers()
                    if m.canvas.figure not in figures]
        _cell_figures.clear()
    lines = []
    for fig in figures:
        problems = check_figure(fig)
        if _reported.get(fig) == problems:
            continue
        _reported[fig] = problems
        title = fig.get_suptitle() or next((ax.get_title() for ax in fig.axes if ax.get_title()),
                                           "")
        what = f"figure {title!r}" if title else "a figure without a title"
        lines += [f"{PREFIX}: {what}: {problem}" for problem in problems]
    for line in lines:
        print(line)
    return lines


def _post_run_cell(result: Any = None) -> None:
    """IPython ``post_run_cell`` callback: check the cell's figures (errors never break a cell)."""
    try:
        check_cell_figures()
    except Exception as error:  # a checker bug must not stop the student's notebook
        print(f"{PREFIX}: the figure check itself failed ({type(error).__name__}: {error})")


def register_figure_hook(shell: Any = None) -> bool:
    """Apply the style and check every cell's figures after it runs, inside IPython/Jupyter.

    Registers :func:`check_cell_figures` on IPython's ``post_run_cell`` event. That event fires
    after the inline backend has shown and closed the cell's figures, which is why the figures
    are tracked when pyplot makes them (``figure.hooks``, see :func:`apply_style`).
    Registering twice is harmless (IPython keeps one copy of a callback).

    Args:
        shell: the IPython shell; default: the running one (``IPython.get_ipython()``).

    Returns:
        True when the hook is registered, False outside IPython (plain Python, scripts).
    """
    apply_style()
    if shell is None:
        try:
            from IPython import get_ipython
        except ImportError:
            return False
        shell = get_ipython()
        if shell is None:
            return False
    shell.events.register("post_run_cell", _post_run_cell)
    return True
