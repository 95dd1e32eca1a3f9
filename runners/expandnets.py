"""ExpandNets on a compact net: ``python -m runners.expandnets --out DIR [--kernel-size 7] ...``

Guo, Alvarez & Salzmann (NeurIPS 2020): train a compact net (SmallNet) and its linear expansions
(FC, CL, CK, CL+FC, CK+FC; ``embeddings.expand``) with the one training loop of the toolkit,
through the experiment engine (runs, resume state, checkpoint layout: ``runners._engine``), then compress every expanded net back to the compact architecture
(``embeddings.compress``, exact) and evaluate it. Per epoch the history adds to the loop's columns
the minimum and mean pairwise cosine similarity of mini-batch gradients (gradient confusion,
``landscape.gradient_cosines``; the paper's Fig. 2 middle) and the squared norms of the trained and of
the compressed parameters; at the end every cosine is kept for a density plot (Fig. 2 right).

Weight decay comes in the paper's two kinds (Fig. 7): ``normal`` L2 penalises the parameters being
trained (the optimizer's ``weight_decay``), ``product`` L2 penalises the compressed ones,
:math:`\\frac{\\lambda}{2}\\sum\\lVert\\theta_c(\\theta)\\rVert^2`, through the chain.

Output: ``DIR/expandnets.h5`` (schema in ``results/README.md``: one ``runs/<run>`` group per trained
net with its ``history`` curve and ``final_cosines``) and ``DIR/checkpoints/<run>/compressed.pt``,
the compressed (compact) net, loadable with ``results.load_checkpoint``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from results import unfinished_runs, write_attrs
from runners._engine import (
    EXPANDNETS_COLUMNS,
    EXPANDNETS_MODES,
    ExpandNetsRun,
    RunContext,
    RunSpec,
    TrainConfig,
    expandnets_specs,
    load_data,
    open_experiment,
    run_all,
    seed_summary,
)
from runners.cli import add_common_arguments, add_seeds_argument, expand_seeds, progress_disabled, resolve_device


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m runners.expandnets", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output folder (expandnets.h5, checkpoints/)")
    # --model like every command; only the SmallNets have an ExpandNets expansion and compression here.
    parser.add_argument("--model", "--arch", dest="arch", default="auto", choices=("auto", "smallnet1d", "smallnet2d"),
                        help="compact net; auto: smallnet1d for (C, L) data, smallnet2d for images")
    parser.add_argument("--kernel-size", type=int, default=7, help="SmallNet kernel size (paper: 3 or 7; CK needs odd > 3)")
    parser.add_argument("--modes", default=",".join(EXPANDNETS_MODES),
                        help=f"comma-separated nets to train, from {', '.join(EXPANDNETS_MODES)} (default: all)")
    parser.add_argument("--rate", type=int, default=4, help="expansion rate r (paper: 4)")
    parser.add_argument("--expand-classifier", action="store_true", help="FC modes also expand the last Linear layer")
    parser.add_argument("--repeats", type=int, default=None, help="alias of --seeds N: seeds --seed, --seed+1, ... trained for every net")
    parser.add_argument("--epochs", type=int, default=30, help="training epochs")
    parser.add_argument("--batch-size", type=int, default=100, help="training batch size")
    parser.add_argument("--optimizer", default="adam", choices=("adam", "sgd"), help="optimizer (default: adam)")
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate")
    parser.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    parser.add_argument("--schedule", default="constant", choices=("constant", "cosine", "step"), help="learning-rate schedule")
    parser.add_argument("--weight-decay", type=float, default=0.0, help="L2 coefficient lambda (0: none)")
    parser.add_argument("--l2", default="normal",
                        help="comma-separated weight-decay kinds for expanded nets: normal (on the trained "
                             "parameters), product (on the compressed ones); compact nets always use normal")
    parser.add_argument("--cosine-batches", type=int, default=20,
                        help="mini-batches sampled per epoch for the pairwise gradient cosines (pairs: n(n-1)/2)")
    parser.add_argument("--cosine-batch-size", type=int, default=None, help="their size (default: --batch-size)")
    parser.add_argument("--probe-points", type=int, default=0,
                        help="landscape probes of the final compact / compressed nets: top Hessian eigenvalue and a "
                             "1-D loss surface of this many points (0: none)")
    parser.add_argument("--probe-examples", type=int, default=1000, help="training examples the probes average over")
    parser.add_argument("--n-train", type=int, default=None, help="keep only this many training examples")
    parser.add_argument("--n-test", type=int, default=None, help="keep only this many test examples")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the runs of expandnets.h5 and their checkpoints (other results in the file are kept)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run of the same command")
    add_common_arguments(parser)
    add_seeds_argument(parser)
    return parser


def _split(text: str, allowed: Sequence[str], flag: str) -> tuple[str, ...]:
    items = tuple(item.strip() for item in text.split(",") if item.strip())
    bad = [item for item in items if item not in allowed]
    if bad or not items:
        raise SystemExit(f"error: {flag} takes a comma-separated list from {', '.join(allowed)}; got {text!r}")
    return tuple(dict.fromkeys(items))


def _validate(args: argparse.Namespace) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The modes and weight-decay kinds asked for; SystemExit on a bad flag."""
    modes = _split(args.modes, EXPANDNETS_MODES, "--modes")
    kinds = _split(args.l2, ("normal", "product"), "--l2")
    for flag, value, low in (("--rate", args.rate, 1), ("--repeats", 1 if args.repeats is None else args.repeats, 1),
                             ("--cosine-batches", args.cosine_batches, 2),
                             ("--probe-points", args.probe_points, 0), ("--probe-examples", args.probe_examples, 1)):
        if value < low:
            raise SystemExit(f"error: {flag} must be at least {low}; got {value}")
    if args.repeats is not None and args.seeds is not None:
        raise SystemExit("error: --repeats is an alias of --seeds N; pass one of them")
    # The seeds as trained: --repeats N, --seeds N and the list they expand to are one configuration for --resume.
    args.seeds = list(expand_seeds(args.seeds if args.repeats is None else args.repeats, args.seed))
    del args.repeats
    return modes, kinds


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    modes, kinds = _validate(args)
    specs = expandnets_specs(modes=modes, kinds=kinds, seeds=args.seeds,
                             epochs=args.epochs, rate=args.rate)
    executor = ExpandNetsRun(rate=args.rate, expand_classifier=args.expand_classifier, cosine_batches=args.cosine_batches,
                             cosine_batch_size=args.cosine_batch_size, probe_points=args.probe_points,
                             probe_examples=args.probe_examples)
    try:
        config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr,
                             momentum=args.momentum, weight_decay=args.weight_decay, schedule=args.schedule)
        data = load_data(args.data, root=args.data_root, download=args.download, seed=args.seed,
                         n_train=args.n_train, n_test=args.n_test)
        arch = args.arch if args.arch != "auto" else ("smallnet1d" if len(data.input_shape) == 2 else "smallnet2d")
        context = RunContext(
            out=str(args.out), data=args.data, data_root=args.data_root, download=args.download, n_train=args.n_train,
            n_test=args.n_test, augment=False, arch=arch, arch_kwargs={"kernel_size": args.kernel_size}, config=config,
            seed=args.seed, device=str(resolve_device(args.device)), resume=args.resume,
            progress=not progress_disabled(args.quiet),
        )
        for mode in modes:  # every expansion is checked before anything is written
            executor.net(RunSpec(mode, "cnn", 0, attrs={"mode": mode}), context, data)
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"error: {err}") from None
    if args.cosine_batches > len(data.y_train) // (args.cosine_batch_size or args.batch_size):
        raise SystemExit(f"error: --cosine-batches {args.cosine_batches} exceeds the full batches of the training set; lower it")
    path = os.path.join(args.out, "expandnets.h5")
    with open_experiment(args, tool="runners.expandnets", path=path, name="runs", runs=[s.name for s in specs], argv=argv) as result:
        write_attrs(result.group, {"data": data.name})
        try:
            run_all(specs, context, result.group, executor=executor, columns=EXPANDNETS_COLUMNS)
        except (ValueError, FileNotFoundError) as err:
            raise SystemExit(f"error: {str(err).splitlines()[0]}") from None
        summary = seed_summary(result.group)
        write_attrs(result.group, {"summary": summary})
        unfinished = unfinished_runs(result.group)
    json.dump(summary, sys.stdout, indent=2)
    print()
    if unfinished:  # the summary above is over the finished runs only
        raise SystemExit(f"error: runs without a result: {'; '.join(f'{n} {why}' for n, why in sorted(unfinished.items()))}; "
                         "lower --lr (their histories are in the file)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
