"""matplotlib on the Agg backend (no display needed), imported only when a figure is drawn."""

from __future__ import annotations

from pathlib import Path

from pipeline.files import atomic_path


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, out: Path) -> Path:
    """Lay out, write (creating the folder) and close, so figures never pile up in memory."""
    plt = pyplot()
    if fig.get_layout_engine() is None:  # a figure made with its own layout keeps it
        fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return out
