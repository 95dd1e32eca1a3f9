"""Flags and output handling shared by ``runners.train`` and ``runners.relax``."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import h5py

import embeddings

from results import load_checkpoint, open_store, provenance, read_attrs, write_attrs
from runners._relax_jobs import RunContext, fresh_cnn
from runners.cli import fail, progress_disabled, resolve_device
from runners.training import TrainConfig

# Options that change how a run is executed but not what it computes: a resume may change them.
EXECUTION_ONLY = ("resume", "overwrite", "quiet", "jobs", "threads", "device", "out", "shard", "max_bytes")


def int_list(text: str) -> tuple[int, ...]:
    """Parse ``"0,1,2"`` (an empty string is an empty list) for argparse."""
    try:
        return tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 0,2,8, got {text!r}") from None


def json_dict(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"expected a JSON object like '{{\"channels\": 32}}', got {text!r} ({err.msg})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object like '{{\"channels\": 32}}', got {text!r}")
    return value


def byte_size(text: str) -> int:
    """Parse ``"2GiB"``, ``"512MiB"``, ``"1.5e9"`` or ``"800000000"`` (bytes) for argparse."""
    units = {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "kb": 10**3, "mb": 10**6, "gb": 10**9, "b": 1}
    lowered = text.strip().lower()
    unit = next((u for u in units if lowered.endswith(u)), "b" if lowered.endswith("b") else "")
    try:
        value = float(lowered[: len(lowered) - len(unit)] if unit else lowered) * units.get(unit, 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size like 2GiB, 512MiB or 800000000 (bytes), got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive size like 2GiB, got {text!r}")
    return int(value)


def add_training_arguments(parser: argparse.ArgumentParser, *, out: str, epochs: int) -> None:
    """Architecture, optimizer and output flags (the data/device/seed flags come from runners.cli)."""
    parser.add_argument("--out", default=out, help=f"output folder: results.h5, checkpoints/, state/ (default: {out})")
    parser.add_argument("--arch", default=None,
                        help="architecture name in the embeddings registry (default: vanilla1d for sequences, vanilla2d for images)")
    parser.add_argument("--channels", type=int, default=32,
                        help="conv width of the VanillaCNN (default: 32, whose eFCN has 1.1M parameters on MNIST-1D; the paper uses 64)")
    parser.add_argument("--arch-kwargs", type=json_dict, default={}, help="extra JSON keyword arguments of the architecture, e.g. '{\"pool\": true}'")
    parser.add_argument("--epochs", type=int, default=epochs, help=f"training epochs (default: {epochs})")
    parser.add_argument("--batch-size", type=int, default=100, help="examples per step (default: 100)")
    parser.add_argument("--optimizer", choices=("adam", "sgd"), default="adam", help="optimizer (default: adam; SGD uses --momentum)")
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate (default: 1e-3)")
    parser.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default: 0.9)")
    parser.add_argument("--weight-decay", type=float, default=0.0, help="L2 weight decay (default: 0)")
    parser.add_argument("--schedule", choices=("constant", "cosine", "step"), default="constant", help="learning-rate schedule per epoch (default: constant)")
    parser.add_argument("--step-every", type=int, default=30, help="step schedule: epochs between decays (default: 30)")
    parser.add_argument("--gamma", type=float, default=0.1, help="step schedule: decay factor (default: 0.1)")
    parser.add_argument("--augment", action="store_true", help="random crop (padding 4) and flip while training (2-D images only)")
    parser.add_argument("--n-train", type=int, default=None, help="keep only the first N training examples (quick runs)")
    parser.add_argument("--n-test", type=int, default=None, help="keep only the first N test examples (quick runs)")
    parser.add_argument("--amp", action="store_true", help="bfloat16 mixed precision for the training steps (evaluations stay float32)")
    parser.add_argument("--max-bytes", type=byte_size, default=None,
                        help="refuse embeddings whose parameters exceed this size, e.g. 2GiB (default: half the free memory of --device)")
    parser.add_argument("--resume", action="store_true", help="continue a killed run from its last per-epoch state in --out")
    parser.add_argument("--overwrite", action="store_true", help="replace the results and checkpoints already in --out")


def context_from_args(args: argparse.Namespace) -> RunContext:
    """Validate the shared flags and turn them into a :class:`RunContext` (SystemExit on bad input)."""
    try:
        config = TrainConfig(
            epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr,
            momentum=args.momentum, weight_decay=args.weight_decay, schedule=args.schedule,
            step_every=args.step_every, gamma=args.gamma, amp=args.amp,
        )
    except ValueError as err:
        raise fail(f"{err} (check the --{str(err).split()[0].replace('_', '-')} flag)") from None
    if args.arch is None:
        args.arch = "vanilla2d" if args.data in ("digits", "cifar10", "cifar100") else "vanilla1d"
    arch_kwargs = dict(args.arch_kwargs)
    if args.arch in ("vanilla1d", "vanilla2d"):
        arch_kwargs.setdefault("channels", args.channels)
    return RunContext(
        out=str(Path(args.out)), data=args.data, data_root=args.data_root, download=args.download,
        n_train=args.n_train, n_test=args.n_test, augment=args.augment, arch=args.arch, arch_kwargs=arch_kwargs,
        config=config, seed=args.seed, device=str(resolve_device(args.device)), resume=args.resume,
        progress=not progress_disabled(args.quiet), max_bytes=args.max_bytes,
    )


def preflight(context: RunContext, init: str | None = None, *, embeds: Literal["efcn", "elcn"] | None = None) -> None:
    """Fail on bad input (data, architecture, starting checkpoint, an embedding over the memory budget) before anything is written."""
    try:
        data = context.load()
        if init:
            load_checkpoint(init)
    except (ValueError, FileNotFoundError) as err:
        raise fail(str(err).splitlines()[0]) from None
    try:
        cnn = fresh_cnn(context, data.input_shape, data.num_classes)
    except ValueError as err:  # unknown name or arguments: the registry's message says it all
        raise fail(str(err).splitlines()[0]) from None
    except RuntimeError as err:  # torch refusing the shapes while the model sizes its classifier
        raise fail(
            f"--arch {context.arch} with {context.arch_kwargs} cannot take {data.name} inputs of shape "
            f"{data.input_shape}: {str(err).splitlines()[0]} (adjust --arch-kwargs, e.g. '{{\"pool\": false}}' for small images)"
        ) from None
    if embeds:
        source = load_checkpoint(init)[0] if init else cnn
        needed = embeddings.estimate_memory(source, data.input_shape, embeds) if source.space != embeds else 0
        budget = context.max_bytes or embeddings.default_max_bytes(context.device)
        if needed > budget:
            raise fail(f"the {embeds} of --arch {context.arch} on {data.name} needs {needed / 2**30:.3g} GiB of parameters, more than "
                       f"{'--max-bytes' if context.max_bytes else 'half the free memory of ' + context.device} "
                       f"({budget / 2**30:.3g} GiB); raise --max-bytes, use a smaller --channels, or a device with more memory")


def open_experiment(args: argparse.Namespace, tool: str, argv: Sequence[str] | None) -> h5py.File:
    """Open ``--out/results.h5`` honouring --resume / --overwrite, and write or check its config."""
    out = Path(args.out)
    path = out / "results.h5"
    config = {key: value for key, value in sorted(vars(args).items()) if key not in EXECUTION_ONLY}
    if args.overwrite:
        for folder in ("checkpoints", "state"):
            shutil.rmtree(out / folder, ignore_errors=True)
    elif not args.resume and ((out / "checkpoints").exists() or (out / "state").exists()) and not path.exists():
        raise fail(f"{out} holds checkpoints of another run; pass --overwrite to replace them or choose another --out")
    try:
        store = open_store(path, overwrite=args.overwrite, resume=args.resume)
    except FileExistsError:
        raise fail(f"{path} already exists; pass --resume to continue it or --overwrite to replace it") from None
    if "config" in store.attrs:
        before = json.loads(read_attrs(store)["config"])
        if before != json.loads(json.dumps(config)):
            changed = sorted(k for k in set(before) | set(config) if before.get(k) != json.loads(json.dumps(config)).get(k))
            store.close()
            raise fail(f"--resume with other options than the run in {path} (changed: {', '.join(changed)}); "
                       f"use the same options or --overwrite")
    else:
        write_attrs(store, {**provenance(seed=args.seed, argv=list(sys.argv if argv is None else [tool, *argv])),
                            "tool": tool, "config": config})
    return store
