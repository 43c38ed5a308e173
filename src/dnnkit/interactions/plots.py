"""Matplotlib views: strength curves and overlap vs k. They return figures (no file I/O)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from dnnkit.interactions.metrics import strength_curve

__all__ = ["plot_overlap_vs_k", "plot_strength_curves"]


def plot_strength_curves(curves: Mapping[str, torch.Tensor], *, title: str = ""):
    """Sorted ``|I| / max |I|`` (averaged over samples) per label on a log scale.

    ``curves`` maps a label to interactions of shape ``(..., K)`` (e.g. AND and OR concatenated).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.6))
    for label, x in curves.items():
        c = strength_curve(x.detach().double()).reshape(-1, x.shape[-1]).mean(0).cpu()
        ax.plot(range(1, len(c) + 1), c.clamp(min=1e-12).numpy(), label=label)
    ax.set_yscale("log")
    ax.axhline(0.05, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("rank of |I(S)|")
    ax.set_ylabel("|I| / max |I| (mean over samples)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_overlap_vs_k(ks: Sequence[int], panels: Mapping[str, Mapping[str, Sequence[float]]]):
    """One panel per kind ('AND', 'OR'), one line per extraction method: overlap vs k."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, (kind, lines) in zip(axes[0], panels.items()):
        for label, ys in lines.items():
            ax.plot(list(ks), list(ys), marker="o", ms=3, label=label)
        ax.set_title(kind)
        ax.set_xlabel("k (top-k interactions)")
        ax.set_ylabel("overlap between the two models")
        ax.set_ylim(0, 1)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
