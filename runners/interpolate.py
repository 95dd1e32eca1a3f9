"""Paths between two checkpoints: linear, elastic string and output-space interpolation (the paper's Fig. 6).

    python -m runners.interpolate --ckpt-a cnn.pt --ckpt-b efcn.pt --out paths.h5 --plot

A CNN facing an eFCN (or eLCN) is embedded into the larger space first. Every method becomes the
curve ``/interpolation/<name>/<method>`` (index ``alpha``; ``train_loss``, ``train_acc``, ``test_loss``,
``test_acc``, and for ``output`` the ``disagree_a/b`` and ``kl_a/b`` columns) with the path metrics
and the endpoints' values as attributes; the string's trajectory (mini-batch loss of every point)
is the curve ``/interpolation/<name>/string_trajectory`` (index ``step``; ``point_0`` .. ``point_{M-1}``).
With ``--align weights|activations`` B's hidden units are first permuted to match A's (Git Re-Basin,
:func:`landscape.align`; B's function is unchanged): the methods run on the aligned pair, the linear
path always among them, and the unaligned linear path is kept as ``/interpolation/<name>/unaligned/linear``;
the group records ``align``, ``barrier_unaligned``, ``barrier_aligned`` and the alignment's diagnostics.
Points are flushed one at a time; ``--resume`` continues a killed run (the string is re-optimised,
deterministically, when its curve is incomplete).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

import numpy as np
import torch

from landscape import NonFiniteError, StringConfig, align, align_endpoints, check_finite_model, interpolate, path_metrics, polyline_length
from results import CheckpointError, CurveWriter, ResultError, check_result_name, load_checkpoint, open_result, read_attrs, write_attrs
from runners._engine import check_model, launched, load_data, on_device, peak_memory_bytes, reset_peak_memory, resolve_loss
from runners.cli import add_common_arguments, add_loss_argument, add_model_arguments, fail, model_from_args, progress_disabled, resolve_device

METHODS = ("linear", "string", "output")
COLUMNS = ("alpha", "train_loss", "train_acc", "test_loss", "test_acc")
OUTPUT_COLUMNS = ("disagree_a", "disagree_b", "kl_a", "kl_b")


def _methods(text: str) -> tuple[str, ...]:
    methods = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise argparse.ArgumentTypeError(f"expected a comma-separated subset of {','.join(METHODS)}, got {text!r}")
    return methods


def _string_lr(text: str) -> float | str:
    """``--string-lr``: ``auto`` or a positive number."""
    if text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected auto or a positive number, got {text!r}")
    return value


def _alpha_range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two numbers LO,HI like 0,1 or -0.5,1.5, got {text!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise argparse.ArgumentTypeError(f"expected finite LO < HI, got {text!r}")
    return lo, hi


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m runners.interpolate", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_common_arguments(parser)
    add_loss_argument(parser)
    parser.add_argument("--ckpt-a", required=True, help="checkpoint at alpha = 0 (e.g. the CNN)")
    parser.add_argument("--ckpt-b", required=True, help="checkpoint at alpha = 1 (e.g. the eFCN trained from it)")
    add_model_arguments(parser, default_help="the one the checkpoints record; needed for plain state dicts")
    parser.add_argument("--methods", type=_methods, default=METHODS, help="comma-separated: linear, string, output")
    parser.add_argument("--points", type=int, default=21, help="alphas evaluated per path, equally spaced over --alpha-range")
    parser.add_argument("--alpha-range", type=_alpha_range, default=(0.0, 1.0),
                        help="LO,HI of alpha; beyond [0, 1] only for --methods linear (write --alpha-range=-0.5,1.5 when LO < 0)")
    parser.add_argument("--batch-size", type=int, default=250, help="examples per batch (evaluation and string steps; the paper: 250)")
    parser.add_argument("--n-train", type=int, default=None, help="keep only the first N training examples (quick runs)")
    parser.add_argument("--n-test", type=int, default=None, help="keep only the first N test examples (quick runs)")
    parser.add_argument("--bn-recalibrate", action=argparse.BooleanOptionalAction, default=None,
                        help="recompute BatchNorm statistics at every point (default: on for models with BatchNorm)%(default).0s")
    parser.add_argument("--output-mode", choices=("probabilities", "logits"), default="probabilities",
                        help="output-space averaging of softmax probabilities (ensembling) or of logits")
    parser.add_argument("--align", choices=("none", "weights", "activations"), default="none",
                        help="permute B's hidden units to match A's before interpolating (weight or activation matching); "
                             "the unaligned linear path is stored too")
    string = parser.add_argument_group("elastic string")
    string.add_argument("--stiffness", type=float, default=1.0, help="spring constant k >= 0 (large: the linear path; 0: free fall)")
    string.add_argument("--string-points", type=int, default=5, help="points M of the string, endpoints included (paper: 3 interior)")
    string.add_argument("--string-steps", type=int, default=None, help="mini-batch steps (default: --string-epochs passes)%(default).0s")
    string.add_argument("--string-epochs", type=int, default=3, help="passes over the training set when --string-steps is not given")
    string.add_argument("--string-lr", type=_string_lr, default="auto",
                        help="step of the string's points: auto (1 / the endpoints' largest Hessian eigenvalue, from a few Lanczos "
                             "products; SGD only, stored as lr and lambda_max_a/b) or a number (the paper: 0.1, which suits "
                             "SGD-trained nets only) (default: %(default)s)")
    string.add_argument("--string-optimizer", choices=("sgd", "adam"), default="sgd", help="optimiser of the string's points")
    string.add_argument("--forces", choices=("elastic", "neb"), default="elastic",
                        help="elastic: the paper's gradient of loss + spring energy; neb: nudged elastic band")
    string.add_argument("--spring", choices=("implicit", "explicit"), default="implicit",
                        help="elastic forces: exact proximal step of the spring (stable for any k) or plain gradient")
    string.add_argument("--climbing-image", action="store_true", help="with --forces neb: the highest point climbs")
    string.add_argument("--batching", choices=("auto", "vmap", "loop"), default="auto", help="vmap over the points or a loop; auto: a fixed rule on the device and the model (see landscape.StringConfig)")
    string.add_argument("--record-every", type=int, default=10, help="record the string's loss profile every so many steps")
    parser.add_argument("--out", default="interpolation.h5", help="HDF5 result file")
    parser.add_argument("--name", default=None,
                        help="result /interpolation/<name> in --out, which may hold several (default: <run A>__<run B>, the run of a "
                             "checkpoints/<run>/final.pt or its file name's stem, e.g. cnn__efcn_tw4)%(default).0s")
    parser.add_argument("--overwrite", action="store_true", help="replace the result --name in --out (other results are kept)")
    parser.add_argument("--resume", action="store_true", help="continue the result --name in --out (a new --method is added to it)")
    parser.add_argument("--plot", action="store_true", help="also write the Fig. 6 style figure next to --out (.png and .pdf)")
    return parser


def _load(path: str, device: torch.device, args: argparse.Namespace):
    try:
        # --model builds what a plain state dict is loaded into; our checkpoints rebuild themselves.
        model, _ = load_checkpoint(path, model=model_from_args(args), map_location=device)
    except CheckpointError as err:
        raise fail(str(err).splitlines()[0]) from None
    return model


def _string_config(args: argparse.Namespace) -> StringConfig:
    try:
        return StringConfig(
            num_points=args.string_points, stiffness=args.stiffness, epochs=args.string_epochs, steps=args.string_steps,
            lr=args.string_lr, optimizer=args.string_optimizer, forces=args.forces, spring=args.spring,
            climbing_image=args.climbing_image, record_every=args.record_every, batching=args.batching, seed=args.seed,
        )
    except ValueError as err:
        raise fail(f"{err} (check the string flags: --stiffness, --string-*, --forces, --climbing-image)") from None


def _check_args(args: argparse.Namespace) -> None:
    if args.points < 2:
        raise fail(f"--points must be >= 2 (a path needs two alphas), got {args.points}")
    lo, hi = args.alpha_range
    beyond = [m for m in args.methods if m != "linear"]
    if (lo < 0 or hi > 1) and beyond:
        raise fail(f"--alpha-range {lo:g},{hi:g} leaves [0, 1], where {' and '.join(beyond)} paths do not exist; "
                   f"use --alpha-range 0,1 or --methods linear")
    if args.batch_size < 1:
        raise fail(f"--batch-size must be >= 1, got {args.batch_size}")
    for path in (args.ckpt_a, args.ckpt_b):
        if not os.path.isfile(path):
            raise fail(f"checkpoint {path} does not exist")
    if args.overwrite and args.resume:
        raise fail("--overwrite and --resume contradict each other; choose one")
    if args.loss != "ce" and "output" in args.methods:  # its barrier would compare a cross entropy with --loss values
        raise fail(f"--methods output scores the averaged outputs by their cross entropy, not by --loss {args.loss}; "
                   "choose --methods linear,string or --loss ce")
    name = _result_name(args)
    if "/" in name:  # one group below /interpolation: the name also names the --plot files
        raise fail(f"--name {name!r} contains '/'; an interpolation name is one part of letters, digits and _.+=-: choose another --name")
    try:
        check_result_name(f"interpolation/{name}")
    except ResultError as err:
        raise fail(str(err)) from None


def _run_label(path: str) -> str:
    """A checkpoint's run: ``checkpoints/efcn_tw4/final.pt`` -> ``efcn_tw4``, ``.../cnn/epoch_8.pt`` -> ``cnn_epoch_8``, else the stem.

    The training runners keep each run's checkpoints in a folder named after the run, so a stem alone
    (``final``) would name every pair alike.
    """
    path = Path(path)
    if path.stem == "final" and path.parent.name:
        return path.parent.name
    if path.stem.startswith("epoch_") and path.parent.name:
        return f"{path.parent.name}_{path.stem}"
    return path.stem


def _result_name(args: argparse.Namespace) -> str:
    return args.name or f"{_run_label(args.ckpt_a)}__{_run_label(args.ckpt_b)}"


# Options a resumed result may change: how the command runs, and --methods, which may grow. The
# checkpoints are stored as the group's ckpt_a/ckpt_b attributes (relative paths; under torchrun
# the other ranks write a scratch copy elsewhere, so a path could not be compared).
_NOT_CONFIG = ("quiet", "device", "resume", "overwrite", "plot", "out", "name", "methods", "ckpt_a", "ckpt_b")


def _config(args: argparse.Namespace) -> dict:
    return {key: value for key, value in sorted(vars(args).items()) if key not in _NOT_CONFIG}


def _prepare(args: argparse.Namespace, device: torch.device):
    """Everything that can fail on bad input, before the result file is touched."""
    _check_args(args)
    config = _string_config(args)
    model_a, model_b = _load(args.ckpt_a, device, args), _load(args.ckpt_b, device, args)
    for path, model in ((args.ckpt_a, model_a), (args.ckpt_b, model_b)):
        try:  # a diverged endpoint gives NaN curves and a meaningless "peak test acc": refuse it before writing
            check_finite_model(model)
        except NonFiniteError as err:
            raise fail(f"{path}: {err}") from None
    input_shape = _input_shape(args, model_a)
    try:
        # Embedded once here (the CNN endpoint into the other's space), not again for every method.
        model_a, model_b, spaces = align_endpoints(model_a, model_b, input_shape=input_shape)
    except ValueError as err:
        raise fail(str(err).replace("input_shape=", "--input-shape ")) from None
    num_classes = int(getattr(model_a, "arch_kwargs", {}).get("num_classes", 10))
    try:
        data = load_data(args.data, root=args.data_root, download=args.download, seed=args.seed, n_train=args.n_train,
                         n_test=args.n_test, num_classes=num_classes, **({"input_shape": input_shape} if input_shape else {}))
    except (ValueError, FileNotFoundError) as err:
        raise fail(str(err).splitlines()[0]) from None
    if input_shape is not None and tuple(data.input_shape) != input_shape:
        raise fail(f"--data {args.data} has inputs of shape {tuple(data.input_shape)} but the checkpoints expect "
                   f"{input_shape}; pass the data set the models were trained on")
    try:
        loss_fn = resolve_loss(args.loss)
        for path, model in ((args.ckpt_a, model_a), (args.ckpt_b, model_b)):
            check_model(data, model, what=f"checkpoint {path}", loss_fn=loss_fn)
    except ValueError as err:
        raise fail(str(err)) from None
    return model_a, model_b, spaces, data, config


def _input_shape(args: argparse.Namespace, model: torch.nn.Module) -> tuple[int, ...] | None:
    """``--input-shape``, else the shape the checkpoint records, else ``None`` (the data's inputs are used as they are).

    Only the fake data set has no shape of its own: there an unknown shape is one line. An
    endpoint to embed into the other's space needs one too (``align_endpoints`` says so).
    """
    shape = args.input_shape or getattr(model, "input_shape", None)
    if shape is None and args.data == "fake":
        raise fail(f"--data fake needs the input shape, which {args.ckpt_a} (model {getattr(model, 'arch', type(model).__name__)}) "
                   "does not record; pass --input-shape, e.g. 3,32,32")
    return None if shape is None else tuple(shape)


def _write_trajectory(group, result) -> None:
    string = result.string
    columns = ("step", *(f"point_{i}" for i in range(string.num_points)))
    writer = CurveWriter(group, "string_trajectory", columns=columns, index="step")
    writer.truncate(0)
    for step, losses in zip(string.trajectory_step, string.trajectory_loss):
        writer.append(step=float(step), **{f"point_{i}": float(v) for i, v in enumerate(losses)})
    write_attrs(writer.group, {"alpha": string.alpha.tolist(), "batching": string.batching, "steps": string.steps})


def _run_method(args, method: str, group, model_a, model_b, spaces: dict[str, str], data, config: StringConfig, device,
                alphas: np.ndarray) -> dict:
    columns = COLUMNS + (OUTPUT_COLUMNS if method == "output" else ())
    writer = CurveWriter(group, method, columns=columns, index="alpha")
    done = writer.read()["alpha"]
    if len(done) > len(alphas) or not np.allclose(done, alphas[: len(done)]):
        raise fail(f"{writer.group.name} holds alphas {done.tolist()[:4]}... that differ from this run's; "
                   f"use the same --points/--alpha-range or --overwrite")
    attrs = read_attrs(writer.group)
    remaining = alphas[len(done):]
    if not len(remaining) and "barrier" in attrs and (method != "string" or "string_trajectory" in group):
        return attrs
    rerun = remaining if len(remaining) else alphas[-1:]  # complete curve, missing metrics: one cheap point
    try:
        result = interpolate(
            model_a, model_b, resolve_loss(args.loss), data.batches("train", args.batch_size), alphas=rerun.tolist(), method=method,
            test_batches=data.batches("test", args.batch_size), device=device, bn_recalibrate=args.bn_recalibrate,
            output_mode=args.output_mode, string=config, progress=not progress_disabled(args.quiet),
            on_point=(lambda row: writer.append(**{c: row[c] for c in columns})) if len(remaining) else None,
        )
    except ValueError as err:  # non-finite endpoint losses, extrapolated negative BatchNorm variances: one line
        raise fail(str(err).splitlines()[0]) from None
    ends = result.endpoints
    metrics = result.metrics
    curve = writer.read()
    finite = np.isfinite(curve["train_loss"]) & np.isfinite(curve["test_loss"])
    if len(remaining) != len(alphas):  # resumed: the metrics belong to the whole curve in the file, not to this call's part
        metrics = path_metrics(
            curve["alpha"][finite], curve["train_loss"][finite], curve["test_acc"][finite],
            endpoint_train_loss=(ends["train_a"].loss, ends["train_b"].loss),
            endpoint_test_acc=(ends["test_a"].accuracy, ends["test_b"].accuracy),
            length=polyline_length(result.knots, float(alphas[0]), float(alphas[-1])) if result.knots is not None else math.nan,
        )
    attrs = metrics.as_dict() | {
        f"{split}_{side}_{what}": getattr(ends[f"{split}_{side}"], "loss" if what == "loss" else "accuracy")
        for split in ("train", "test") for side in ("a", "b") for what in ("loss", "acc")
    } | {"bn_recalibrated": result.bn_recalibrated} | {f"space_{k}": v for k, v in spaces.items()}
    # Points whose loss is NaN or inf (far extrapolation): their accuracies are NaN and the metrics skip them.
    attrs["nonfinite_alphas"] = np.asarray(curve["alpha"][~finite], dtype="f8")  # an array even when empty (a [] list is JSON)
    if method == "string":
        start, end = result.string.trajectory_loss[0, 1:-1].mean(), result.string.trajectory_loss[-1, 1:-1].mean()
        attrs |= {"loss_rose": bool(end > 1.1 * start), "stiffness": config.stiffness, "num_points": config.num_points, "forces": config.forces,
                  "spring": config.spring, "lr": result.string.lr, "lr_rule": "auto" if config.lr == "auto" else "given",
                  "optimizer": config.optimizer, "steps": result.string.steps}
        if result.string.lambda_max is not None:  # what the automatic step was chosen from
            attrs |= {"lambda_max_a": result.string.lambda_max[0], "lambda_max_b": result.string.lambda_max[1]}
        _write_trajectory(group, result)
    if method == "output":
        attrs["output_mode"] = args.output_mode
    write_attrs(writer.group, attrs)
    return read_attrs(writer.group)


def _align(args: argparse.Namespace, model_a, model_b, data):
    """``landscape.align`` of B onto A (``None`` for ``--align none``); one line when the models cannot be traced."""
    if args.align == "none":
        return None
    try:
        return align(model_a, model_b, method=args.align, batches=data.batches("train", args.batch_size), seed=args.seed)
    except ValueError as err:
        raise fail(str(err)) from None


def _table(name: str, rows: dict[str, dict]) -> str:
    first = next(iter(rows.values()))
    width = max(8, *map(len, rows))  # the "unaligned" row of --align
    lines = [
        f"{name}: A {first['space_a']} (train loss {first['train_a_loss']:.4g}, test acc {first['test_a_acc']:.4f}) -> "
        f"B {first['space_b']} (train loss {first['train_b_loss']:.4g}, test acc {first['test_b_acc']:.4f}), "
        f"common space {first['space_common']}",
        f"{'method':<{width}} {'barrier':>9} {'at alpha':>8} {'peak test acc':>13} {'at alpha':>8} {'gain':>8} {'length':>9}",
    ]
    for method, m in rows.items():
        # "z": a rounding residue below zero (a convex path, e.g. the output method's, a few ulps under its
        # chord at an endpoint) prints as 0.0000, not -0.0000; the file keeps the value as computed.
        lines.append(f"{method:<{width}} {m['barrier']:>z9.4f} {m['barrier_alpha']:>8.2f} {m['peak_test_acc']:>13.4f} "
                     f"{m['peak_test_alpha']:>8.2f} {m['test_acc_gain']:>+z8.4f} {m['length']:>9.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with launched(args):  # under torchrun: data-parallel probes, rank 0 writes --out
        try:
            return _main(args, argv)
        except ResultError as err:  # raised by the open result itself: a full disk while writing
            raise fail(str(err)) from None


def _main(args: argparse.Namespace, argv: list[str] | None) -> int:
    device = resolve_device(args.device)
    reset_peak_memory(device)
    model_a, model_b, spaces, data, config = _prepare(args, device)
    data = on_device(data, device)  # once, not at every point of every path
    alignment = _align(args, model_a, model_b, data)
    methods = args.methods if alignment is None or "linear" in args.methods else ("linear", *args.methods)
    name = _result_name(args)
    lo, hi = args.alpha_range
    alphas = np.linspace(lo, hi, args.points)
    try:
        result = open_result(args.out, f"interpolation/{name}", tool="runners.interpolate", config=_config(args),
                             resume=args.resume, overwrite=args.overwrite, seed=args.seed,
                             argv=sys.argv if argv is None else ["runners.interpolate", *argv])
    except ResultError as err:
        raise fail(str(err)) from None
    with result:
        group = result.group
        result.write_attrs({"ckpt_a": result.relative(args.ckpt_a), "ckpt_b": result.relative(args.ckpt_b), "data": args.data, "loss": args.loss,
                            "batch_size": args.batch_size, "alpha_range": [lo, hi], "points": args.points})
        rows = {method: _run_method(args, method, group, model_a, model_b if alignment is None else alignment.model,
                                    spaces, data, config, device, alphas)
                for method in methods}
        result.write_attrs({"align": args.align})
        if alignment is not None:
            unaligned = _run_method(args, "linear", group.require_group("unaligned"), model_a, model_b, spaces, data, config,
                                    device, alphas)
            rows["unaligned"] = unaligned
            result.write_attrs({"barrier_unaligned": unaligned["barrier"], "barrier_aligned": rows["linear"]["barrier"],
                                "align_iterations": alignment.iterations, "align_converged": alignment.converged,
                                "align_similarity_before": alignment.similarity_before,
                                "align_similarity_after": alignment.similarity_after})
        result.write_attrs({"peak_memory_bytes": peak_memory_bytes(device)})
    print(_table(name, rows))
    for method, row in rows.items():
        if len(row.get("nonfinite_alphas", [])):
            shown = ", ".join(f"{a:g}" for a in row["nonfinite_alphas"][:5])
            print(f"note: {method}: the loss is not finite at {len(row['nonfinite_alphas'])} alphas ({shown}...); "
                  "those points are marked (nonfinite_alphas) and left out of the metrics")
    if "string" in rows and rows["string"].get("loss_rose"):
        print(f"note: the string's interior loss rose by over 10% while it was optimised at lr {rows['string']['lr']:.3g}; the step is "
              "probably too large for these minima: pass a smaller --string-lr (--string-lr auto takes it from their curvature)")
    if args.plot:
        from runners._figures import plot_paths

        for path in plot_paths(args.out, name):
            print(f"figure: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
