"""How a result file names the runs of several seeds: one rule, shared by every reader and writer.

A run group carries ``protocol_run`` (its name in the protocol, without the ``_s<seed>`` suffix that
several seeds add) and ``seed``. A file written before seeds has neither: the run is then its own
protocol run, with the seed of the result it belongs to.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["run_key", "unfinished_runs"]


def run_key(name: str, attrs: Mapping[str, Any], default_seed: int | None) -> tuple[str, int | None]:
    """``(protocol_run, seed)`` of the run group ``name`` with attributes ``attrs``.

    Args:
        name: the group's name in the file.
        attrs: its attributes (``h5py`` attributes or a dict).
        default_seed: the seed of a run that records none (the result's seed; ``None`` if unknown).

    Example:
        >>> run_key("efcn_tw4_s1", {"protocol_run": "efcn_tw4", "seed": 1}, 0)
        ('efcn_tw4', 1)
        >>> run_key("cnn", {}, 3)
        ('cnn', 3)
    """
    seed = attrs.get("seed", default_seed)
    return str(attrs.get("protocol_run", name)), None if seed is None else int(seed)


def unfinished_runs(runs: Any) -> dict[str, str]:
    """``{name: why}`` of the run groups in ``runs`` (an h5py group) that ended without a result: diverged or skipped.

    ``status`` is ``"done"`` for a finished run; ``"diverged"`` (with ``diverged_epoch``) when its training
    loss became non-finite; ``"skipped"`` (with ``skipped_because``) when it could not start, its parent
    having diverged before the snapshot it starts from. Readers and aggregates use ``done`` runs only.

    Example of a why: ``"diverged in epoch 3"``, ``"skipped: its parent cnn diverged in epoch 3, ..."``.
    """
    found = {}
    for name, group in runs.items():
        status = getattr(group, "attrs", {}).get("status")
        if status == "diverged":
            found[name] = f"diverged in epoch {int(group.attrs['diverged_epoch'])}"
        elif status == "skipped":
            found[name] = f"skipped: {group.attrs.get('skipped_because', 'its parent did not finish')}"
    return found
