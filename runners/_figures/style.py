"""How every figure looks (:func:`set_style`) and how every figure is written (:func:`save_figure`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import matplotlib.pyplot as plt
import seaborn as sns

FORMATS = ("png", "pdf")
# 130 dpi: a 12-inch-wide figure stays under ~1600 px, readable on a page and light in git (docs/gallery).
DPI = 130


def set_style(context: Literal["paper", "notebook"] = "notebook") -> None:
    """The seaborn theme of every figure: white grid, constrained layout, font sizes of ``context``.

    Args:
        context: ``"notebook"`` for the paper's figures; ``"paper"`` (smaller fonts) for the CLIs'
            compact multi-panel figures of 4 inches per panel.
    """
    sns.set_theme(style="whitegrid", context=context, rc={"figure.constrained_layout.use": True})


def save_figure(figure: plt.Figure, stem: str | os.PathLike, *, formats: tuple[str, ...] = FORMATS) -> list[Path]:
    """Write ``figure`` to ``<stem>.png`` and ``<stem>.pdf`` (tight bounding box), then close it.

    Args:
        figure: the figure to write; it is closed afterwards, even when a write fails.
        stem: the path without extension; its folder must exist.
        formats: the file extensions to write, each a format matplotlib knows.

    Returns:
        The files written, in the order of ``formats``.
    """
    paths = [Path(f"{os.fspath(stem)}.{fmt}") for fmt in formats]
    try:
        for path in paths:
            figure.savefig(path, dpi=DPI, bbox_inches="tight")
    finally:
        plt.close(figure)
    return paths
