"""The colour-blind-safe style and the figure checker that notebooks run after every cell."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402

from lmcourse import plotting  # noqa: E402
from lmcourse.plotting import OKABE_ITO, check_figure  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    plt.close("all")
    plotting._cell_figures.clear()        # figures other tests made while the hook was on
    yield
    plt.close("all")


def good_figure():
    fig, ax = plt.subplots()
    ax.plot([0, 1, 2], [1.0, 0.5, 0.2], label="train")
    ax.plot([0, 1, 2], [1.1, 0.7, 0.6], label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (nats)")
    ax.set_title("Validation loss stops falling after epoch 1")
    ax.legend()
    return fig, ax


def test_good_figure_has_no_problems():
    fig, _ = good_figure()
    assert check_figure(fig) == []


@pytest.mark.parametrize(("spoil", "expected"), [
    (lambda ax: ax.set_xlabel(""), "no x label"),
    (lambda ax: ax.set_ylabel(""), "no y label"),
    (lambda ax: ax.set_title(""), "no title"),
    (lambda ax: ax.get_legend().remove(), "no legend"),
])
def test_each_missing_piece_is_found(spoil, expected):
    fig, ax = good_figure()
    spoil(ax)
    problems = check_figure(fig)
    assert len(problems) == 1 and expected in problems[0], problems


def test_one_labelled_line_needs_no_legend_but_bars_count_as_series():
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1], label="only one")
    ax.axhline(0.5, color="k")                        # unlabelled reference line
    ax.set(xlabel="x (m)", ylabel="y (m)", title="one series")
    assert check_figure(fig) == []
    ax.bar([0, 1], [1, 2], label="bars")
    assert any("2 labelled series" in p for p in check_figure(fig))


def test_figure_title_and_shared_labels_count():
    fig, axes = plt.subplots(1, 2, sharey=True)
    for ax in axes:
        ax.plot([0, 1], [0, 1])
        ax.set_xlabel("step")
    axes[0].set_ylabel("accuracy (fraction)")          # the right panel shares it
    assert sorted(check_figure(fig)) == ["axes 1 of 2: no title (ax.set_title or fig.suptitle: "
                                         "say what to see)",
                                         "axes 2 of 2: no title (ax.set_title or fig.suptitle: "
                                         "say what to see)"]
    fig.suptitle("Both panels rise")
    assert check_figure(fig) == []


def test_images_need_a_title_but_no_axis_labels():
    fig, axes = plt.subplots(1, 2)
    for ax in axes:
        ax.imshow(np.eye(4), cmap="gray_r")
    axes[1].matshow(np.eye(3))
    problems = check_figure(fig)
    assert len(problems) == 2 and all("no title" in p for p in problems), problems
    assert not any("label" in p for p in problems)
    axes[0].set_title("digit 5")
    axes[1].set_title("digit 0")
    assert check_figure(fig) == []


def test_axis_off_and_empty_axes_are_exempt_from_labels():
    fig, axes = plt.subplots(1, 2)
    axes[0].text(0.5, 0.5, "a note")
    axes[0].axis("off")
    axes[0].set_title("notes")
    # axes[1] stays empty: nothing to read, nothing to check
    assert check_figure(fig) == []


def test_colour_bar_needs_a_label():
    fig, ax = plt.subplots()
    image = ax.imshow(np.eye(3))
    ax.set_title("confusion matrix")
    bar = fig.colorbar(image)
    assert check_figure(fig) == ["a colour bar has no label (fig.colorbar(..., label=...), "
                                 "with units)"]
    bar.set_label("images")
    assert check_figure(fig) == []


def test_legend_on_another_axes_or_on_the_figure_counts():
    fig, ax = plt.subplots()
    twin = ax.twinx()
    ax.plot([0, 1], [0, 1], label="loss")
    ax.plot([0, 1], [1, 0], label="smoothed loss")
    twin.plot([0, 1], [3, 4], color="C2", label="accuracy")
    twin.plot([0, 1], [3, 3], color="C3", label="baseline accuracy")
    ax.set(xlabel="epoch", ylabel="loss (nats)", title="twin axes")
    twin.set_ylabel("accuracy (fraction)")
    assert len(check_figure(fig)) == 2                        # neither axes has a legend
    fig.legend()                                              # one legend with all four
    assert check_figure(fig) == []


def test_check_figure_rejects_an_axes():
    _, ax = good_figure()
    with pytest.raises(TypeError, match="ax.figure"):
        check_figure(ax)


def test_style_is_okabe_ito():
    with matplotlib.rc_context():
        plotting.apply_style()
        cycle = [to_rgb(c) for c in matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]]
        assert cycle == [to_rgb(c) for c in OKABE_ITO]
        _, ax = plt.subplots()
        line = ax.plot([0, 1])[0]
        assert to_rgb(line.get_color()) == to_rgb("#0072B2")
    assert len(set(OKABE_ITO)) == 8


class _Events:
    def __init__(self):
        self.callbacks = {"post_run_cell": []}

    def register(self, event, function):
        if function not in self.callbacks[event]:
            self.callbacks[event].append(function)


class _Shell:
    def __init__(self):
        self.events = _Events()


def test_hook_prints_each_problem_once_after_the_cell(capsys):
    shell = _Shell()
    with matplotlib.rc_context():
        assert plotting.register_figure_hook(shell)
        assert plotting.register_figure_hook(shell)               # twice: still one callback
        assert len(shell.events.callbacks["post_run_cell"]) == 1
        hook = shell.events.callbacks["post_run_cell"][0]
        fig, ax = plt.subplots()                                 # "a cell" makes a figure …
        ax.plot([0, 1], [0, 1])
        ax.set_title("unlabelled")
        plt.close(fig)                                           # … and the backend closes it
        hook(None)
        out = capsys.readouterr().out.splitlines()
        assert out == ["FIGURE CHECK: figure 'unlabelled': the axes ('unlabelled'): no x label "
                       "(ax.set_xlabel, with units)",
                       "FIGURE CHECK: figure 'unlabelled': the axes ('unlabelled'): no y label "
                       "(ax.set_ylabel, with units)"]
        hook(None)                                               # next cell: nothing new
        assert capsys.readouterr().out == ""
        good_figure()                                            # a good figure, left open
        hook(None)
        assert capsys.readouterr().out == ""


def test_no_hook_outside_ipython():
    with matplotlib.rc_context():
        assert plotting.register_figure_hook() is False          # pytest is not IPython
