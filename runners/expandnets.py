"""ExpandNets on a compact net: ``python -m runners.expandnets --out DIR [--kernel-size 7] ...``

Guo, Alvarez & Salzmann (NeurIPS 2020): train a compact net (SmallNet) and its linear expansions
(FC, CL, CK, CL+FC, CK+FC; ``embeddings.expand``) with the one training loop of the toolkit
(``runners.training.train``), then compress every expanded net back to the compact architecture
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
import shutil
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from embeddings import build_model, compress, expand
from landscape import gradient_cosines
from results import CurveWriter, open_store, provenance, read_attrs, save_checkpoint, write_attrs
from runners._expandnets_runs import RunSpec, landscape_probes, penalised, squared_norms
from runners.cli import add_common_arguments, progress_disabled, resolve_device
from runners.data import Dataset, load_data
from runners.training import HISTORY_COLUMNS, TrainConfig, evaluate, train

MODES = ("compact", "fc", "cl", "ck", "cl+fc", "ck+fc")
COLUMNS = (*HISTORY_COLUMNS, "min_cosine", "mean_cosine", "l2_trained", "l2_compressed")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m runners.expandnets", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output folder (expandnets.h5, checkpoints/)")
    parser.add_argument("--arch", default="auto", choices=("auto", "smallnet1d", "smallnet2d"),
                        help="compact net; auto: smallnet1d for (C, L) data, smallnet2d for images")
    parser.add_argument("--kernel-size", type=int, default=7, help="SmallNet kernel size (paper: 3 or 7; CK needs odd > 3)")
    parser.add_argument("--modes", default=",".join(MODES),
                        help=f"comma-separated nets to train, from {', '.join(MODES)} (default: all)")
    parser.add_argument("--rate", type=int, default=4, help="expansion rate r (paper: 4)")
    parser.add_argument("--expand-classifier", action="store_true", help="FC modes also expand the last Linear layer")
    parser.add_argument("--repeats", type=int, default=1, help="seeds --seed, --seed+1, ... trained for every net")
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
    parser.add_argument("--overwrite", action="store_true", help="replace an existing expandnets.h5")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run of the same command")
    add_common_arguments(parser)
    return parser


def _split(text: str, allowed: Sequence[str], flag: str) -> tuple[str, ...]:
    items = tuple(item.strip() for item in text.split(",") if item.strip())
    bad = [item for item in items if item not in allowed]
    if bad or not items:
        raise SystemExit(f"error: {flag} takes a comma-separated list from {', '.join(allowed)}; got {text!r}")
    return tuple(dict.fromkeys(items))


def _specs(args: argparse.Namespace) -> list[RunSpec]:
    modes = _split(args.modes, MODES, "--modes")
    kinds = _split(args.l2, ("normal", "product"), "--l2")
    for flag, value, low in (("--rate", args.rate, 1), ("--repeats", args.repeats, 1), ("--cosine-batches", args.cosine_batches, 2),
                             ("--probe-points", args.probe_points, 0), ("--probe-examples", args.probe_examples, 1)):
        if value < low:
            raise SystemExit(f"error: {flag} must be at least {low}; got {value}")
    specs = []
    for seed in range(args.seed, args.seed + args.repeats):
        for mode in modes:
            for kind in ("normal",) if mode == "compact" else kinds:
                specs.append(RunSpec(mode=mode, l2=kind, seed=seed))
    return specs


def _compact(args: argparse.Namespace, data: Dataset, seed: int) -> nn.Module:
    arch = args.arch if args.arch != "auto" else ("smallnet1d" if len(data.input_shape) == 2 else "smallnet2d")
    # build_model initialises from torch's global RNG: fork it so that the seed decides the net.
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return build_model(arch, input_shape=data.input_shape, num_classes=data.num_classes, kernel_size=args.kernel_size)


def _net(args: argparse.Namespace, data: Dataset, spec: RunSpec) -> nn.Module:
    compact = _compact(args, data, spec.seed)
    if spec.mode == "compact":
        return compact
    return expand(compact, spec.mode, rate=args.rate, expand_classifier=args.expand_classifier,
                  generator=torch.Generator().manual_seed(spec.seed))


def _cosine_batches(args: argparse.Namespace, data: Dataset, seed: int, epoch: int) -> list:
    size = args.cosine_batch_size or args.batch_size
    generator = torch.Generator().manual_seed(1_000_003 * seed + epoch)
    batches = [b for b in data.shuffled_batches(size, generator=generator) if len(b[1]) == size]
    return batches[: args.cosine_batches]


def _train_one(args, data, spec: RunSpec, config: TrainConfig, store, out: Path, device, quiet: bool) -> dict:
    model = _net(args, data, spec)
    group = store.require_group(f"runs/{spec.name}")
    history = CurveWriter(group, "history", columns=COLUMNS, index="epoch")
    expanded = spec.mode != "compact"
    write_attrs(group, {"mode": spec.mode, "l2": spec.l2, "seed": spec.seed, "rate": args.rate if expanded else 1,
                        "epochs": config.epochs, "status": "running", "space": "cnn",
                        "num_params": sum(p.numel() for p in model.parameters())})

    def on_epoch(record) -> None:
        if record.epoch < len(history):  # replayed by a resumed run: already written
            return
        result = gradient_cosines(model, _cosine_batches(args, data, spec.seed, record.epoch))
        trained, compressed = squared_norms(model)
        history.append_at(record.epoch, **record.row(), min_cosine=result.minimum, mean_cosine=result.mean,
                          l2_trained=trained, l2_compressed=compressed)

    product = spec.l2 == "product" and expanded and args.weight_decay > 0
    trainee = penalised(model, args.weight_decay) if product else model
    run_config = TrainConfig(**{**asdict(config), "weight_decay": 0.0 if product else config.weight_decay})
    state = out / "state" / f"{spec.name}.pt"
    result = train(trainee, data, config=run_config, seed=spec.seed, device=device, state_path=state,
                   resume=args.resume, on_epoch=on_epoch, progress=not quiet, desc=spec.name)
    model.eval()
    final = gradient_cosines(model, _cosine_batches(args, data, spec.seed, config.epochs + 1))
    cosines = group.require_group("final_cosines")
    for name, values in (("pair", np.arange(len(final.cosines))), ("cosine", final.cosines.numpy()),
                         ("i", final.pairs[:, 0].numpy()), ("j", final.pairs[:, 1].numpy())):
        if name in cosines:
            del cosines[name]
        cosines.create_dataset(name, data=values.astype("f8"))
    cosines.attrs["index"] = "pair"
    compact = compress(model) if expanded else model
    test = data.batches("test", config.eval_batch_size)
    compressed_loss, compressed_acc = evaluate(compact, test, device=device)
    with torch.no_grad():
        error = max(float((compact(x.to(device)) - model(x.to(device))).abs().max()) for x, _ in test)
    checkpoint = out / "checkpoints" / spec.name / "compressed.pt"
    save_checkpoint(checkpoint, compact, mode=spec.mode, l2=spec.l2, seed=spec.seed, epoch=config.epochs,
                    test_acc=compressed_acc, data=data.name)
    if args.probe_points:
        x, y = data.x_train[: args.probe_examples], data.y_train[: args.probe_examples]
        probe_data = list(zip(x.split(config.eval_batch_size), y.split(config.eval_batch_size)))
        top, surface = landscape_probes(compact, probe_data, points=args.probe_points, seed=spec.seed)
        curve = CurveWriter(group, "surface_1d", columns=("alpha", "train_loss", "train_acc"), index="alpha")
        curve.truncate(0)
        for alpha, loss, acc in zip(surface.axes[0].tolist(), surface.loss.tolist(), surface.accuracy.tolist()):
            curve.append(alpha=alpha, train_loss=loss, train_acc=acc)
        write_attrs(group, {"top_hessian_eigenvalue": top})
    last = result.final
    summary = {
        "final_train_loss": last.train_loss, "final_train_acc": last.train_acc, "final_test_loss": last.test_loss,
        "final_test_acc": last.test_acc, "compressed_test_loss": compressed_loss, "compressed_test_acc": compressed_acc,
        "compression_error": error, "final_min_cosine": final.minimum, "final_mean_cosine": final.mean,
        "num_params_compact": sum(p.numel() for p in compact.parameters()),
        "checkpoint": str(checkpoint.relative_to(out)), "status": "done",
    }
    write_attrs(group, summary)
    store.flush()
    state.unlink(missing_ok=True)
    return summary


def _summary(store) -> dict:
    """Mean and standard deviation over seeds of the final numbers of every net."""
    table: dict[str, dict[str, list[float]]] = {}
    for name in store["runs"]:
        attrs = read_attrs(store[f"runs/{name}"])
        if attrs.get("status") != "done":
            continue
        label = attrs["mode"] + ("" if attrs["l2"] == "normal" else "_productl2")
        row = table.setdefault(label, {})
        for key in ("compressed_test_acc", "final_train_acc", "final_min_cosine", "final_mean_cosine", "compression_error",
                    "top_hessian_eigenvalue"):
            if key in attrs:
                row.setdefault(key, []).append(float(attrs[key]))
    return {
        label: {"seeds": len(row["compressed_test_acc"]),
                **{key: {"mean": float(np.mean(v)), "std": float(np.std(v))} for key, v in row.items()}}
        for label, row in table.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    specs = _specs(args)
    quiet = progress_disabled(args.quiet)
    device = resolve_device(args.device)
    try:
        config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr,
                             momentum=args.momentum, weight_decay=args.weight_decay, schedule=args.schedule)
        data = load_data(args.data, root=args.data_root, download=args.download, seed=args.seed,
                         n_train=args.n_train, n_test=args.n_test)
        for spec in {RunSpec(mode=s.mode, l2="normal", seed=args.seed) for s in specs}:
            _net(args, data, spec)  # every expansion is checked before anything is written
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"error: {err}") from None
    if args.cosine_batches > len(data.y_train) // (args.cosine_batch_size or args.batch_size):
        raise SystemExit(f"error: --cosine-batches {args.cosine_batches} exceeds the full batches of the training set; lower it")
    out = Path(args.out)
    path = out / "expandnets.h5"
    try:
        store = open_store(path, overwrite=args.overwrite, resume=args.resume)
    except FileExistsError as err:
        raise SystemExit(f"error: {err}") from None
    if args.overwrite and not args.resume:
        shutil.rmtree(out / "state", ignore_errors=True)
    with store:
        config_attrs = {key: value for key, value in vars(args).items() if key not in ("out", "overwrite", "resume", "quiet")}
        if "tool" in store.attrs and json.loads(read_attrs(store).get("config", "{}")) != json.loads(json.dumps(config_attrs)):
            raise SystemExit(f"error: {path} was written by another configuration; rerun it with the same options or --overwrite")
        write_attrs(store, {**provenance(seed=args.seed, argv=sys.argv if argv is None else ["runners.expandnets", *argv]),
                            "tool": "runners.expandnets", "config": config_attrs, "data": data.name})
        for spec in specs:
            group = store.get(f"runs/{spec.name}")
            if group is not None and read_attrs(group).get("status") == "done":
                continue
            _train_one(args, data, spec, config, store, out, device, quiet)
        summary = _summary(store)
        write_attrs(store, {"summary": summary})
    json.dump(summary, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
