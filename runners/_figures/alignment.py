"""The alignment table: linear barriers before and after permutation alignment, read from ``runners.interpolate --align``.

Every ``/interpolation/<name>`` group whose ``align`` attribute is not ``"none"`` gives one row: the
endpoints' spaces and test accuracies, the alignment method and the cosine similarity of the weights
before and after it, and the linear-path train-loss barriers ``barrier_unaligned`` and ``barrier_aligned``
that ``runners.interpolate`` stored. :func:`write_alignment_markdown` writes the table to a file, or
between the ``<!-- alignment-table -->`` and ``<!-- /alignment-table -->`` markers of one (the README).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import h5py

from results import read_attrs
from runners._figures.readers import open_results

__all__ = ["AlignedPath", "aligned_paths", "alignment_markdown", "write_alignment_markdown"]

BEGIN, END = "<!-- alignment-table -->", "<!-- /alignment-table -->"


@dataclass(frozen=True)
class AlignedPath:
    """One aligned interpolation: its name, endpoints and barriers (train loss, linear path)."""

    name: str
    method: str
    space_a: str
    space_b: str
    test_acc_a: float
    test_acc_b: float
    similarity_before: float
    similarity_after: float
    barrier_unaligned: float
    barrier_aligned: float


def aligned_paths(store: h5py.File) -> list[AlignedPath]:
    """Every interpolation of the file computed with ``--align weights|activations``, by name."""
    rows = []
    for name, group in sorted(store.get("interpolation", {}).items()):
        attrs = read_attrs(group)
        if attrs.get("align", "none") == "none" or "barrier_aligned" not in attrs:
            continue
        linear = read_attrs(group["linear"])
        rows.append(AlignedPath(
            name=name, method=attrs["align"], space_a=linear["space_a"], space_b=linear["space_b"],
            test_acc_a=float(linear["test_a_acc"]), test_acc_b=float(linear["test_b_acc"]),
            similarity_before=float(attrs["align_similarity_before"]), similarity_after=float(attrs["align_similarity_after"]),
            barrier_unaligned=float(attrs["barrier_unaligned"]), barrier_aligned=float(attrs["barrier_aligned"]),
        ))
    return rows


def alignment_markdown(rows: list[AlignedPath], *, origin: str) -> str:
    """The rows as a Markdown table, with a line saying which file they come from."""
    lines = [
        "| pair | alignment | test acc A / B | weight cosine before -> after | linear barrier unaligned | aligned |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        # Spaces are named only when one endpoint is embedded ("cnn" is any model not relaxed, an MLP too).
        pair = r.name if r.space_a == r.space_b == "cnn" else f"{r.name} ({r.space_a} / {r.space_b})"
        lines.append(f"| {pair} | {r.method} | {r.test_acc_a:.3f} / {r.test_acc_b:.3f} | "
                     f"{r.similarity_before:.3f} -> {r.similarity_after:.3f} | {r.barrier_unaligned:.3f} | {r.barrier_aligned:.3f} |")
    return "\n".join([*lines, "", f"(train-loss barriers of the linear path, read from {origin})"]) + "\n"


def write_alignment_markdown(results: str | os.PathLike, out: str | os.PathLike) -> int:
    """Write the table of ``results`` to ``out`` (between the markers if ``out`` has them); returns the row count.

    Raises:
        ValueError: the file holds no aligned interpolation (one line naming the command that makes one).
    """
    with open_results(results) as store:
        rows = aligned_paths(store)
    if not rows:
        raise ValueError(f"{results} holds no interpolation computed with --align; run python -m runners.interpolate "
                         "--ckpt-a A --ckpt-b B --align weights --out FILE first")
    table = alignment_markdown(rows, origin=Path(results).name)
    path = Path(out)
    text = path.read_text() if path.is_file() else ""
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        table = f"{head}{BEGIN}\n{table}{END}{rest.split(END, 1)[1]}"
    path.write_text(table)
    return len(rows)
