"""The paper's protocol: relax a CNN's constraints at switch times t_w and keep training.

d'Ascoli, Sagun, Biroli, Bruna, "Finding the needle in the haystack with convolutions: on the
benefits of architectural bias" (NeurIPS 2019):

1. train a CNN from scratch for ``--epochs``, saving snapshots at the switch times ``--t-w``;
2. embed each snapshot into eFCN space (and eLCN space with ``--space efcn,elcn``) and train it for
   ``--relax-epochs`` more epochs, on its own clock, with a fresh optimizer;
3. train a vanilla FCN of the same size (the eFCN architecture, standard random init) for ``--epochs``;
4. hierarchically, CNN -> eLCN at ``tw1`` (CNN clock) -> eFCN at ``tw2`` (the eLCN's clock), over the
   ``--tw1`` x ``--tw2`` grid, each eFCN trained ``--relax-epochs``.

Every run's history, final accuracies, final delta and the local-only / off-local-only masked test
accuracies go into ``--out/results.h5`` (schema: results/README.md). Independent runs train in
``--jobs`` parallel processes; ``--resume`` continues a killed protocol.

A job array splits the protocol over machines: ``--shard i/n`` trains only the runs of shard ``i``
(:func:`shard_runs`) into ``--out/shard-i-of-n/``, and ``python -m runners.merge`` combines the shards'
files into the one the unsharded command writes. Every shard trains the CNN itself (seeded, cheap
next to its embeddings) instead of waiting for another shard's snapshots; the merge checks that the
shards' CNNs agree.

    python -m runners.relax --out runs/relax            # MNIST-1D, a few minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import time
from collections.abc import Sequence

from embeddings import MemoryBudgetError
from results import read_attrs
from runners._relax_cli import add_training_arguments, context_from_args, fail, int_list, open_experiment, preflight
from runners._relax_jobs import RunSpec
from runners._relax_pool import default_threads, run_all
from runners.cli import add_common_arguments

SPACES = ("efcn", "elcn")


def default_switch_times(epochs: int) -> tuple[int, ...]:
    """0, the powers of two below ``epochs``, and ``epochs`` itself (the paper's log-spaced t_w).

    Example:
        >>> default_switch_times(60)
        (0, 1, 2, 4, 8, 16, 32, 60)
    """
    return tuple(sorted({0, epochs, *(2**k for k in range(max(epochs, 1).bit_length()) if 2**k < epochs)}))


def protocol(
    *, epochs: int, relax_epochs: int, t_w: Sequence[int], spaces: Sequence[str], tw1: Sequence[int], tw2: Sequence[int]
) -> list[RunSpec]:
    """The runs of the protocol and what each starts from.

    Example:
        >>> [s.name for s in protocol(epochs=4, relax_epochs=2, t_w=(0, 4), spaces=("efcn",), tw1=(1,), tw2=(2,))]
        ['cnn', 'fcn', 'efcn_tw0', 'efcn_tw4', 'elcn_tw1', 'efcn_tw1_1_tw2_2']
    """
    elcn_starts = sorted(set(tw1) | (set(t_w) if "elcn" in spaces else set()))
    runs = [
        RunSpec("cnn", "cnn", epochs, snapshots=tuple(sorted(set(t_w) | set(tw1)))),
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


def shard_runs(specs: Sequence[RunSpec], index: int, count: int) -> list[RunSpec]:
    """The runs shard ``index`` of ``count`` trains: the CNN, and every ``count``-th branch that starts from it.

    A branch is a run started from the CNN or from scratch (FCN, eFCN and eLCN at each t_w) together with
    the runs started from it (the hierarchical eFCNs of an eLCN), so no shard waits for another.

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


def shard_arg(text: str) -> tuple[int, int]:
    """Parse ``"i/n"`` (0 <= i < n) for argparse."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected i/n with integers, e.g. 0/4, got {text!r}") from None
    if not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"expected i/n with 0 <= i < n, e.g. 0/4, got {text!r}")
    return index, count


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m runners.relax", description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    add_training_arguments(parser, out="runs/relax", epochs=60)
    parser.add_argument("--relax-epochs", type=int, default=30, help="epochs of every eFCN / eLCN after its switch (default: 30)")
    parser.add_argument("--t-w", type=int_list, default=None,
                        help="switch times on the CNN clock, e.g. 0,4,16 (default: 0, powers of two below --epochs, --epochs)")
    parser.add_argument("--space", type=lambda text: tuple(p for p in text.split(",") if p), default=("efcn",),
                        help="spaces the CNN snapshots are embedded into: efcn, elcn or efcn,elcn (default: efcn)")
    parser.add_argument("--tw1", type=int_list, default=(0, 4, 16),
                        help="hierarchical grid: CNN -> eLCN switch times, CNN clock (default: 0,4,16; '' skips the grid)")
    parser.add_argument("--tw2", type=int_list, default=(4, 16),
                        help="hierarchical grid: eLCN -> eFCN switch times, eLCN clock, in 0..--relax-epochs (default: 4,16)")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                        help="independent trainings run in this many parallel processes (default: min(2, cores))")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per process (default: cores / jobs)")
    parser.add_argument("--shard", type=shard_arg, default=None,
                        help="job array: train only shard i of n (e.g. 0/4) into --out/shard-i-of-n; "
                             "combine the shards with python -m runners.merge (default: the whole protocol)")
    return parser


def _validate(args: argparse.Namespace) -> None:
    if args.t_w is None:
        args.t_w = default_switch_times(args.epochs)
    unknown = [s for s in args.space if s not in SPACES]
    if unknown or not args.space:
        raise fail(f"--space takes efcn, elcn or efcn,elcn; got {','.join(args.space) or 'nothing'}")
    for flag, values, limit, clock in (("--t-w", args.t_w, args.epochs, "--epochs"), ("--tw1", args.tw1, args.epochs, "--epochs"),
                                       ("--tw2", args.tw2 if args.tw1 else (), args.relax_epochs, "--relax-epochs")):
        beyond = [v for v in values if not 0 <= v <= limit]
        if beyond:
            raise fail(f"{flag} {','.join(map(str, beyond))} lies beyond {clock} {limit}; switch times must be in 0..{limit}")
    if args.tw1 and not args.tw2:
        raise fail("--tw1 needs --tw2 values for the hierarchical grid (or pass --tw1 '' to skip it)")
    if args.jobs < 1 or args.relax_epochs < 1:
        raise fail(f"--jobs and --relax-epochs must be at least 1, got {args.jobs} and {args.relax_epochs}")


def _summary(store) -> str:
    """One line per run: final and best test accuracy, delta, masked accuracies, seconds, peak memory."""
    columns = ("final_test_acc", "best_test_acc", "final_delta", "local_only_acc", "offlocal_only_acc")
    lines = [f"{'run':<20}{'space':<6}{'final':>7}{'best':>7}{'delta':>7}{'local':>7}{'offloc':>7}{'sec':>7}{'cpu s':>7}{'MiB':>7}"]
    for name in sorted(store["runs"], key=lambda n: (n not in ("cnn", "fcn"), n.count("_"), len(n), n)):
        attrs = read_attrs(store["runs"][name])
        cells = "".join(f"{attrs.get(key, math.nan):>7.3f}" for key in columns)
        cells += "".join(f"{attrs.get(key, math.nan):>7.0f}" for key in ("seconds", "cpu_seconds"))
        cells += f"{attrs.get('peak_memory_bytes', math.nan) / 2**20:>7.0f}"  # GPU: peak allocated; CPU: process peak RSS
        lines.append(f"{name:<20}{attrs['space']:<6}{cells.replace('nan', '  -')}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _validate(args)
    context = context_from_args(args)
    specs = protocol(epochs=args.epochs, relax_epochs=args.relax_epochs, t_w=args.t_w, spaces=args.space,
                     tw1=args.tw1, tw2=args.tw2)
    if args.shard is not None:
        specs = shard_runs(specs, *args.shard)
        args.out = os.path.join(args.out, "shard-{}-of-{}".format(*args.shard))
        context = dataclasses.replace(context, out=args.out)
    preflight(context, embeds="efcn")  # the FCN baseline is eFCN-sized whatever --space says
    started = time.perf_counter()
    with open_experiment(args, "runners.relax", argv) as store:
        try:
            run_all(specs, context, store, jobs=args.jobs, threads=args.threads or default_threads(args.jobs))
        except (ValueError, FileNotFoundError, MemoryBudgetError) as err:
            raise fail(str(err).splitlines()[0]) from None
        store.attrs["total_seconds"] = store.attrs.get("total_seconds", 0.0) + time.perf_counter() - started
        print(_summary(store))
    print(f"results: {os.path.join(args.out, 'results.h5')} ({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
