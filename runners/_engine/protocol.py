"""The paper's relax protocol as a graph of runs, and its split over a job array.

d'Ascoli, Sagun, Biroli, Bruna (NeurIPS 2019): a CNN trained from scratch, its snapshots at the
switch times t_w embedded into eFCN (and eLCN) space and trained on, a vanilla FCN of the same size,
and the hierarchical grid CNN -> eLCN (tw1, CNN clock) -> eFCN (tw2, eLCN clock). :func:`protocol`
lists those runs with what each starts from; :func:`seeded` repeats them for every seed
(``runners.relax --seeds``); :func:`shard_runs` gives the runs of one shard of a job array
(``runners.relax --shard i/n``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from runners._engine.specs import RunSpec

__all__ = ["SPACES", "default_switch_times", "protocol", "seeded", "seeded_name", "shard_runs", "shard_folder"]

SPACES = ("efcn", "elcn")  # the spaces CNN snapshots may be embedded into


def default_switch_times(epochs: int) -> tuple[int, ...]:
    """0, the powers of two below ``epochs``, and ``epochs`` itself (the paper's log-spaced t_w).

    Example:
        >>> default_switch_times(60)
        (0, 1, 2, 4, 8, 16, 32, 60)
    """
    return tuple(sorted({0, epochs, *(2**k for k in range(max(epochs, 1).bit_length()) if 2**k < epochs)}))


def protocol(
    *, epochs: int, relax_epochs: int, t_w: Sequence[int], spaces: Sequence[str], tw1: Sequence[int], tw2: Sequence[int],
    matched_controls: bool = False,
) -> list[RunSpec]:
    """The runs of the protocol and what each starts from.

    The CNN records ``reference_epoch = epochs``: the final CNN of the paper's comparison. With
    ``matched_controls`` it trains on until every relaxed run's epochs seen (t_w + E; tw1 + tw2 + E in
    the hierarchical grid, E = ``relax_epochs``), so its history holds the matched control of each.

    Example:
        >>> [s.name for s in protocol(epochs=4, relax_epochs=2, t_w=(0, 4), spaces=("efcn",), tw1=(1,), tw2=(2,))]
        ['cnn', 'fcn', 'efcn_tw0', 'efcn_tw4', 'elcn_tw1', 'efcn_tw1_1_tw2_2']
        >>> cnn = protocol(epochs=4, relax_epochs=2, t_w=(0, 4), spaces=("efcn",), tw1=(1,), tw2=(2,), matched_controls=True)[0]
        >>> cnn.epochs, cnn.snapshots, cnn.attrs  # 4 + 2 seen by efcn_tw4
        (6, (0, 1, 4), {'reference_epoch': 4})
        >>> protocol(epochs=4, relax_epochs=2, t_w=(0,), spaces=("efcn",), tw1=(3,), tw2=(2,), matched_controls=True)[0].epochs
        7
    """
    elcn_starts = sorted(set(tw1) | (set(t_w) if "elcn" in spaces else set()))
    seen = [t + relax_epochs for t in (*t_w, *elcn_starts)] + [a + b + relax_epochs for a in tw1 for b in tw2]
    runs = [
        RunSpec("cnn", "cnn", max([epochs, *seen]) if matched_controls else epochs, snapshots=tuple(sorted(set(t_w) | set(tw1))),
                attrs={"reference_epoch": epochs}),
        RunSpec("fcn", "fcn", epochs),
    ]
    if "efcn" in spaces:
        runs += [RunSpec(f"efcn_tw{t}", "efcn", relax_epochs, "cnn", t, attrs={"t_w": t}) for t in t_w]
    runs += [
        RunSpec(f"elcn_tw{t}", "elcn", relax_epochs, "cnn", t, snapshots=tuple(tw2) if t in tw1 else (), attrs={"t_w": t})
        for t in elcn_starts
    ]
    runs += [
        RunSpec(f"efcn_tw1_{a}_tw2_{b}", "efcn", relax_epochs, f"elcn_tw{a}", b, attrs={"tw1": a, "tw2": b})
        for a in tw1 for b in tw2
    ]
    return runs


def seeded_name(run: str, seed: int, several: bool) -> str:
    """The name of protocol run ``run`` trained with ``seed``: suffixed ``_s<seed>`` only when there are several seeds.

    Example:
        >>> seeded_name("efcn_tw4", 1, True), seeded_name("efcn_tw4", 1, False), seeded_name("", 1, True)
        ('efcn_tw4_s1', 'efcn_tw4', '')
    """
    return f"{run}_s{seed}" if several and run else run


def seeded(specs: Sequence[RunSpec], seeds: Sequence[int]) -> list[RunSpec]:
    """The runs of ``specs`` once per seed, each starting from its own seed's parent.

    Every run carries its ``seed`` (initialisation and shuffling) and the attributes ``seed`` and
    ``protocol_run`` (its name in ``specs``), which readers group by. With one seed the names are
    those of ``specs``; with several every name gets the suffix ``_s<seed>``. The runs are listed run
    by run (every seed's CNN first), so a pool starts the seeds' runs side by side.

    Example:
        >>> specs = protocol(epochs=4, relax_epochs=2, t_w=(4,), spaces=("efcn",), tw1=(), tw2=())
        >>> [(s.name, s.parent, s.seed) for s in seeded(specs, (0, 7))][::2]
        [('cnn_s0', '', 0), ('fcn_s0', '', 0), ('efcn_tw4_s0', 'cnn_s0', 0)]
        >>> seeded(specs, (3,))[2].name, seeded(specs, (3,))[2].attrs
        ('efcn_tw4', {'t_w': 4, 'seed': 3, 'protocol_run': 'efcn_tw4'})
    """
    several = len(seeds) > 1
    return [
        dataclasses.replace(spec, name=seeded_name(spec.name, seed, several), parent=seeded_name(spec.parent, seed, several),
                            seed=seed, attrs={**spec.attrs, "seed": seed, "protocol_run": spec.name})
        for spec in specs for seed in seeds
    ]


def shard_runs(specs: Sequence[RunSpec], index: int, count: int) -> list[RunSpec]:
    """The runs shard ``index`` of ``count`` trains: the CNN, and every ``count``-th branch that starts from it.

    A branch is a run started from the CNN or from scratch (FCN, eFCN and eLCN at each t_w) together with
    the runs started from it (the hierarchical eFCNs of an eLCN), so no shard waits for another. Every
    shard trains the CNN itself (seeded, cheap next to its embeddings); the merge checks that they agree.
    Shard the protocol before :func:`seeded`: every shard then trains its branches for every seed.

    Example:
        >>> specs = protocol(epochs=4, relax_epochs=2, t_w=(0, 4), spaces=("efcn",), tw1=(1,), tw2=(2,))
        >>> [[s.name for s in shard_runs(specs, i, 2)] for i in (0, 1)]
        [['cnn', 'fcn', 'efcn_tw4'], ['cnn', 'efcn_tw0', 'elcn_tw1', 'efcn_tw1_1_tw2_2']]
    """
    roots = [s.name for s in specs if s.name != "cnn" and s.parent in ("", "cnn")]
    mine = {name for k, name in enumerate(roots) if k % count == index} | {"cnn"}
    by_name = {s.name: s for s in specs}

    def branch(spec: RunSpec) -> str:
        while spec.parent not in ("", "cnn"):
            spec = by_name[spec.parent]
        return spec.name

    return [s for s in specs if s.name == "cnn" or branch(s) in mine]


def shard_folder(index: int, count: int) -> str:
    """The folder of shard ``index`` of ``count`` below ``--out``.

    Example:
        >>> shard_folder(0, 4)
        'shard-0-of-4'
    """
    return f"shard-{index}-of-{count}"
