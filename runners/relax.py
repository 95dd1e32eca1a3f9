"""The paper's protocol: relax a CNN's constraints at switch times t_w and keep training.

d'Ascoli, Sagun, Biroli, Bruna, "Finding the needle in the haystack with convolutions: on the
benefits of architectural bias" (NeurIPS 2019):

1. train a CNN from scratch for ``--epochs``, saving snapshots at the switch times ``--t-w``; with
   ``--matched-controls`` (default) on until every relaxed run's epochs seen (t_w + ``--relax-epochs``),
   so that each relaxed run has a CNN of the same number of epochs to be compared with (its history);
2. embed each snapshot into eFCN space (and eLCN space with ``--space efcn,elcn``) and train it for
   ``--relax-epochs`` more epochs, on its own clock, with a fresh optimizer;
3. train a vanilla FCN of the same size (the eFCN architecture, standard random init) for ``--epochs``;
4. hierarchically, CNN -> eLCN at ``tw1`` (CNN clock) -> eFCN at ``tw2`` (the eLCN's clock), over the
   ``--tw1`` x ``--tw2`` grid, each eFCN trained ``--relax-epochs``.

Every run's history, final accuracies, final delta and the local-only / off-local-only masked test
accuracies go into ``--out/results.h5`` (schema: results/README.md); the CNN's group also records the
final CNN (``reference_epoch`` = ``--epochs``) and the first epoch its training loss is near zero
(:func:`~runners._engine.controls.cnn_references`). Independent runs train in
``--jobs`` parallel processes; ``--resume`` continues a killed protocol.

With ``--seeds`` (a count from ``--seed``, or a list) the whole protocol runs once per seed into the
same file, every run name suffixed ``_s<seed>`` (one seed: names unchanged); every run group carries
``seed`` and ``protocol_run``. The result ``aggregates`` then holds, per protocol run, the mean, std,
Student-t 95% CI and n of its final metrics over the seeds and the paired ``gain_vs_final_cnn``
(runners/_engine/aggregates.py); a table of them ends the output. ``--jobs`` trains the seeds side by side.

A job array splits the protocol over machines: ``--shard i/n`` trains only the runs of shard ``i``
(:func:`shard_runs`) into ``--out/shard-i-of-n/``, and ``python -m runners.merge`` combines the shards'
files into the one the unsharded command writes. Every shard trains the CNN itself (seeded, cheap
next to its embeddings) instead of waiting for another shard's snapshots; the merge checks that the
shards' CNNs agree.

A run whose training loss becomes non-finite ends ``status="diverged"`` (with ``diverged_epoch``, no
accuracies) and the protocol goes on with the other runs: children whose snapshot predates the
divergence train, later ones end ``status="skipped"``. The summary, the aggregates (which leave
them out and list them as ``excluded_runs``) and the results are written, then the command prints
one line naming them and exits with status 1; ``--resume`` does not retrain them.

    python -m runners.relax --out runs/relax            # MNIST-1D, a few minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import h5py

from embeddings import MemoryBudgetError
from results import ResultError, open_result, read_attrs, unfinished_runs
from runners._engine import (
    add_training_arguments,
    aggregate_table,
    context_from_args,
    default_switch_times,
    default_threads,
    experiment_config,
    int_list,
    open_experiment,
    preflight,
    protocol,
    record_cnn_references,
    run_all,
    seeded,
    shard_arg,
    shard_folder,
    shard_runs,
    SPACES,
    write_aggregates,
)
from runners.cli import add_common_arguments, add_seeds_argument, expand_seeds, fail


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m runners.relax", description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    add_seeds_argument(parser)
    add_training_arguments(parser, out="runs/relax", epochs=60)
    parser.add_argument("--relax-epochs", type=int, default=30, help="epochs of every eFCN / eLCN after its switch (default: 30)")
    parser.add_argument("--matched-controls", action=argparse.BooleanOptionalAction, default=True,
                        help="train the CNN until max(--epochs, max(t_w) + --relax-epochs) so every relaxed run has the CNN "
                             "of as many epochs to compare with; the final CNN stays the one at --epochs (default: on)")
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
    # The seeds as run (a count and the list it expands to are the same configuration for --resume).
    args.seeds = list(expand_seeds(args.seeds, args.seed))


def _summary(runs: h5py.Group) -> str:
    """One line per run: final and best test accuracy, delta, masked accuracies, seconds, peak memory."""
    columns = ("final_test_acc", "best_test_acc", "final_delta", "local_only_acc", "offlocal_only_acc")
    lines = [f"{'run':<20}{'space':<6}{'final':>7}{'best':>7}{'delta':>7}{'local':>7}{'offloc':>7}{'sec':>7}{'cpu s':>7}{'MiB':>7}"]
    for name in sorted(runs, key=lambda n: (n not in ("cnn", "fcn"), n.count("_"), len(n), n)):
        attrs = read_attrs(runs[name])
        cells = "".join(f"{attrs.get(key, math.nan):>7.3f}" for key in columns)
        cells += "".join(f"{attrs.get(key, math.nan):>7.0f}" for key in ("seconds", "cpu_seconds"))
        cells += f"{attrs.get('peak_memory_bytes', math.nan) / 2**20:>7.0f}"  # GPU: peak allocated; CPU: the run's peak resident set
        lines.append(f"{name:<20}{attrs['space']:<6}{cells.replace('nan', '  -')}")
        if "reference_test_acc" in attrs:
            near_zero = attrs["near_zero_loss_epoch"]
            lines.append(f"  {name}: final CNN = epoch {attrs['reference_epoch']}, test acc {attrs['reference_test_acc']:.3f}; train loss "
                         f"<= {attrs['near_zero_loss_threshold']:g} " + ("never reached" if math.isnan(near_zero) else
                         f"from epoch {near_zero:.0f}, test acc {attrs['near_zero_loss_test_acc']:.3f}"))
    return "\n".join(lines)


def _aggregate(args: argparse.Namespace, path: str, argv: list[str] | None) -> str:
    """Write the result ``aggregates`` (same tool, config and --resume / --overwrite rule as ``runs``); the table of it."""
    try:
        with open_result(path, "aggregates", tool="runners.relax", config=experiment_config(args), resume=args.resume,
                         overwrite=args.overwrite, seed=args.seed, argv=list(sys.argv if argv is None else ["runners.relax", *argv])) as result:
            summaries = write_aggregates(result.file["runs"], result.group)
            excluded = sorted(unfinished_runs(result.file["runs"]))
    except (ResultError, ValueError) as err:
        raise fail(str(err).splitlines()[0]) from None
    left_out = f"\nleft out (no result): {', '.join(excluded)}" if excluded else ""
    return f"over seeds {','.join(map(str, args.seeds))}: mean ± 95% CI half-width (n)\n{aggregate_table(summaries)}{left_out}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _validate(args)
    specs = protocol(epochs=args.epochs, relax_epochs=args.relax_epochs, t_w=args.t_w, spaces=args.space,
                     tw1=args.tw1, tw2=args.tw2, matched_controls=args.matched_controls)
    if args.shard is not None:
        specs = shard_runs(specs, *args.shard)
        args.out = os.path.join(args.out, shard_folder(*args.shard))
    specs = seeded(specs, args.seeds)
    context = context_from_args(args)
    preflight(context, embeds="efcn")  # the FCN baseline is eFCN-sized whatever --space says
    path = os.path.join(args.out, "results.h5")
    started = time.perf_counter()
    with open_experiment(args, tool="runners.relax", path=path, name="runs", runs=[s.name for s in specs], argv=argv) as result:
        try:
            run_all(specs, context, result.group, jobs=args.jobs, threads=args.threads or default_threads(args.jobs))
        except (ValueError, FileNotFoundError, MemoryBudgetError) as err:
            raise fail(str(err).splitlines()[0]) from None
        record_cnn_references(result.group)
        print(_summary(result.group))
        unfinished = unfinished_runs(result.group)
    if args.shard is None:  # a shard's runs are part of a protocol: aggregate the merged file
        print(_aggregate(args, path, argv))
    print(f"results: {path} ({time.perf_counter() - started:.0f} s)")
    if unfinished:
        raise fail(f"runs without a result: {'; '.join(f'{name} {why}' for name, why in sorted(unfinished.items()))}; "
                   "lower --lr for the diverged ones (their histories are in the file)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
