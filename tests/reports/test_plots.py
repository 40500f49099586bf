"""Figures: round axes of the cascade figure carry whole-number ticks."""

from types import SimpleNamespace

import pytest

from pmargin.reports.plots import cascade_figure, plot_cascade

matplotlib = pytest.importorskip("matplotlib")


def cascade(label, n_rounds):
    rounds = [SimpleNamespace(round=k, index=80000.0 - 1000 * k,
                              liquidated_notional_usd=1e6 * k, bad_debt_usd=1e5 * k)
              for k in range(n_rounds)]
    return SimpleNamespace(label=label, rounds=rounds)


@pytest.mark.parametrize("n_rounds", [2, 3, 7])
def test_round_ticks_are_integers(n_rounds):
    import matplotlib.pyplot as plt

    fig = cascade_figure([cascade("isolated", n_rounds), cascade("portfolio", n_rounds - 1)])
    try:
        fig.canvas.draw()
        for ax in fig.axes:
            if ax.get_xlabel() != "round":
                continue
            ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
            assert ticks
            assert all(float(t).is_integer() for t in ticks), ticks
    finally:
        plt.close(fig)


def test_plot_cascade_writes_the_named_file(tmp_path):
    out = plot_cascade([cascade("cross", 3)], tmp_path / "c.png")
    assert out == tmp_path / "c.png"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
