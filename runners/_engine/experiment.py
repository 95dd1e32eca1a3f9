"""Opening an experiment: flags to a run context, checks before anything is written, the result file.

:func:`open_experiment` opens the tool's named result through ``results.open_result`` (a new name
needs no flag, ``--resume`` continues it, ``--overwrite`` replaces it alone), removes that result's
runs' checkpoints and states on ``--overwrite`` -- only once the file is open, so a second process
pointed at a file in use fails before it deletes anything -- and adds the wall time spent to the
result's ``total_seconds``. The configuration a resume must match is every flag except the
execution-only ones (:data:`EXECUTION_ONLY`).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import h5py

import embeddings
from results import Result, ResultError, load_checkpoint, open_result, result_names
from runners._engine import layout
from runners._engine.execute import fresh_cnn
from runners._engine.loop import TrainConfig
from runners._engine.specs import RunContext
from runners.cli import fail, model_kwargs, progress_disabled, resolve_device

__all__ = ["EXECUTION_ONLY", "experiment_config", "context_from_args", "preflight", "open_experiment"]

# Options that change how a run is executed but not what it computes: a resume may change them.
EXECUTION_ONLY = ("resume", "overwrite", "quiet", "jobs", "threads", "device", "out", "shard", "max_bytes")


def experiment_config(args: argparse.Namespace) -> dict[str, Any]:
    """The flags that decide the numbers: what ``--resume`` must find unchanged.

    Example:
        >>> experiment_config(argparse.Namespace(lr=0.1, jobs=4, out="x", resume=True))
        {'lr': 0.1}
    """
    return {key: value for key, value in sorted(vars(args).items()) if key not in EXECUTION_ONLY}


def context_from_args(args: argparse.Namespace) -> RunContext:
    """Validate the training flags and turn them into a :class:`RunContext` (SystemExit on bad input)."""
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
    arch_kwargs = model_kwargs(args)
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
    shape = context.arch_kwargs.get("input_shape")
    if shape is not None and tuple(shape) != tuple(data.input_shape):
        raise fail(f"--input-shape {','.join(map(str, shape))} does not match the inputs of {data.name}, "
                   f"{','.join(map(str, data.input_shape))}; drop the flag or choose the data set it fits")
    try:
        cnn = fresh_cnn(context, data.input_shape, data.num_classes)
    except ValueError as err:  # unknown name, import path or arguments: build_model's message says it all
        raise fail(str(err).splitlines()[0]) from None
    except RuntimeError as err:  # torch refusing the shapes while the model sizes its classifier
        raise fail(
            f"--model {context.arch} with {context.arch_kwargs} cannot take {data.name} inputs of shape "
            f"{data.input_shape}: {str(err).splitlines()[0]} (adjust --model-kwargs, e.g. '{{\"pool\": false}}' for small images)"
        ) from None
    if embeds:
        source = load_checkpoint(init)[0] if init else cnn
        needed = embeddings.estimate_memory(source, data.input_shape, embeds) if source.space != embeds else 0
        budget = context.max_bytes or embeddings.default_max_bytes(context.device)
        if needed > budget:
            raise fail(f"the {embeds} of --model {context.arch} on {data.name} needs {needed / 2**30:.3g} GiB of parameters, more than "
                       f"{'--max-bytes' if context.max_bytes else 'half the free memory of ' + context.device} "
                       f"({budget / 2**30:.3g} GiB); raise --max-bytes, use a smaller --channels, or a device with more memory")


def _stored_runs(path: Path, name: str) -> list[str] | None:
    """The runs (subgroups with a ``status``) of the result ``name`` in ``path``; ``None`` when it holds no such result."""
    try:
        with h5py.File(path, "r") as file:
            if name not in result_names(file):
                return None
            return [run for run, group in file[name].items() if isinstance(group, h5py.Group) and "status" in group.attrs]
    except OSError:  # missing, locked or unreadable: open_result says which
        return None


@contextlib.contextmanager
def open_experiment(
    args: argparse.Namespace, *, tool: str, path: str | Path, name: str, runs: Sequence[str], argv: Sequence[str] | None,
) -> Iterator[Result]:
    """Open the result ``name`` of ``path`` for the runs ``runs``, by the writer's one rule.

    Args:
        args: the parsed flags (``--resume``, ``--overwrite``, ``--seed`` and the configuration).
        tool: the command, e.g. ``"runners.relax"``.
        path: the result file; the runs' checkpoints and states lie in its folder.
        name: the result's group (``"runs"``, ``"runs/<name>"``).
        runs: the run names whose side files (:mod:`runners._engine.layout`) belong to this result.
        argv: the command's arguments (``None``: ``sys.argv``), recorded with the provenance.

    Yields:
        The open result; the wall time of the block is added to its ``total_seconds``.
    """
    path = Path(path)
    out = path.parent
    stored = _stored_runs(path, name)
    if not (args.resume or args.overwrite):
        stale = layout.holds_run_files(out, runs)
        if stale and stored is None:
            raise fail(f"{out} holds checkpoints or state of run {stale[0]} that {path} does not list; "
                       "pass --overwrite to replace them or choose another --out")
    try:
        result = open_result(path, name, tool=tool, config=experiment_config(args), resume=args.resume,
                             overwrite=args.overwrite, seed=args.seed,
                             argv=list(sys.argv if argv is None else [tool, *argv]))
    except ResultError as err:
        raise fail(str(err)) from None
    with result:
        if args.overwrite:  # the runs asked for now and those the replaced result held
            layout.remove_run_files(out, {*runs, *(stored or ())})
        started = time.perf_counter()
        try:
            yield result
        finally:
            result.group.attrs["total_seconds"] = float(result.group.attrs.get("total_seconds", 0.0)) + time.perf_counter() - started
