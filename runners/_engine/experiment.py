"""Opening an experiment: flags to a run context, checks before anything is written, the result file.

:func:`open_experiment` checks the result's and runs' names, takes the output folder's lock (a
second process gets one line naming the holder and changes nothing), then opens the tool's named
result through ``results.open_result`` (a new name needs no flag, ``--resume`` continues it,
``--overwrite`` replaces it alone). On ``--overwrite`` the replaced result's checkpoints and states
are set aside, not deleted, until the new result is committed, so a failure leaves the old result
whole. It adds the wall time spent to the result's ``total_seconds``. The configuration a resume
must match is every flag except the execution-only ones (:data:`EXECUTION_ONLY`).
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
from results import (PENDING, DurableWriteError, OutputLocked, Result, ResultError, UnreadableData, check_result_name,
                     disk_full_message, is_disk_full, load_checkpoint, open_result, output_lock, result_names)
from runners._engine import layout
from runners._engine.data import load_data
from runners._engine.execute import fresh_cnn
from runners._engine.fit import check_model
from runners._engine.losses import resolve_loss
from runners._engine.loop import TrainConfig
from runners._engine.sources import is_user_source
from runners._engine.specs import RunContext
from runners.cli import fail, model_failure, model_kwargs, progress_disabled, resolve_device

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
            step_every=args.step_every, gamma=args.gamma, amp=args.amp, loss=args.loss,
        )
    except ValueError as err:
        raise fail(f"{err} (check the --{str(err).split()[0].replace('_', '-')} flag)") from None
    if args.arch is None:  # the VanillaCNN of the data's inputs: images (C, H, W) or sequences (C, L)
        args.arch = "vanilla2d" if _image_inputs(args.data) else "vanilla1d"
    arch_kwargs = model_kwargs(args)
    if args.arch in ("vanilla1d", "vanilla2d"):
        arch_kwargs.setdefault("channels", args.channels)
    return RunContext(
        out=str(Path(args.out)), data=args.data, data_root=args.data_root, download=args.download,
        n_train=args.n_train, n_test=args.n_test, augment=args.augment, arch=args.arch, arch_kwargs=arch_kwargs,
        config=config, seed=args.seed, device=str(resolve_device(args.device)), resume=args.resume,
        progress=not progress_disabled(args.quiet), max_bytes=args.max_bytes,
    )


def _image_inputs(data: str) -> bool:
    """Whether ``--data`` holds images ``(C, H, W)``; a user's source is read to know."""
    if not is_user_source(data):
        return data in ("digits", "cifar10", "cifar100")
    try:
        return len(load_data(data).input_shape) == 3
    except (ValueError, FileNotFoundError) as err:
        raise fail(str(err).splitlines()[0]) from None


def preflight(context: RunContext, init: str | None = None, *, embeds: Literal["efcn", "elcn"] | None = None) -> None:
    """Fail on bad input (data, architecture, starting checkpoint, an embedding over the memory budget) before anything is written."""
    try:
        data = context.load()
    except (ValueError, FileNotFoundError) as err:
        raise fail(str(err).splitlines()[0]) from None
    shape = context.arch_kwargs.get("input_shape")
    if shape is not None and tuple(shape) != tuple(data.input_shape):
        raise fail(f"--input-shape {','.join(map(str, shape))} does not match the inputs of {data.name}, "
                   f"{','.join(map(str, data.input_shape))}; drop the flag or choose the data set it fits")
    try:
        cnn = fresh_cnn(context, data.input_shape, data.num_classes)
    except ValueError as err:  # unknown name, import path or arguments
        raise model_failure(context.arch, err) from None
    except RuntimeError as err:  # torch refusing the shapes while the model sizes its classifier
        raise fail(
            f"--model {context.arch} with {context.arch_kwargs} cannot take {data.name} inputs of shape "
            f"{data.input_shape}: {str(err).splitlines()[0]} (adjust --model-kwargs, e.g. '{{\"pool\": false}}' for small images)"
        ) from None
    try:  # a plain state dict --init is loaded into the --model just built
        source = load_checkpoint(init, model=cnn)[0] if init else cnn
    except (ValueError, FileNotFoundError) as err:
        raise fail(str(err).splitlines()[0]) from None
    try:  # a 4-class --init given 10-class data fails here, not mid-epoch with "Target 6 is out of bounds"
        check_model(data, source, what=f"--init {init}" if init else f"--model {context.arch}",
                    loss_fn=resolve_loss(context.config.loss))
    except ValueError as err:
        raise fail(str(err)) from None
    if embeds:
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
    except (OSError, RuntimeError, KeyError):  # missing, locked, unreadable or damaged: open_result says which
        return None


def _recover_overwrite(path: Path, name: str) -> None:
    """An overwrite killed before its commit left the old result's files set aside: put them back (or drop them if it committed)."""
    out = path.parent
    if not layout.set_aside_folder(out, name).exists():
        return
    try:
        with h5py.File(path, "r") as file:
            committed = f"{PENDING}/{name}" not in file
    except (OSError, RuntimeError, KeyError):
        committed = False  # cannot tell: keeping the old files is the safe side
    if committed:
        layout.drop_set_aside(out, name)
    else:
        layout.restore_set_aside(out, name)


@contextlib.contextmanager
def open_experiment(
    args: argparse.Namespace, *, tool: str, path: str | Path, name: str, runs: Sequence[str], argv: Sequence[str] | None,
) -> Iterator[Result]:
    """Open the result ``name`` of ``path`` for the runs ``runs``, by the writer's one rule.

    Before anything in the folder is read, the names are checked (``results.check_result_name``; every
    run path stays inside the folder) and the folder's lock is taken (``results.output_lock``: a second
    process gets one line naming the holder and changes nothing). On ``--overwrite`` the replaced
    result's checkpoints and states are set aside (:func:`layout.set_aside`), deleted once the new
    result is committed and put back if the block fails; a killed overwrite is undone by the next
    command in the folder.

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
    command = list(sys.argv if argv is None else [tool, *argv])
    try:
        check_result_name(name)
        for run in runs:
            layout.state_path(out, run)  # a run name is one safe part, its files inside --out
            layout.checkpoint_path(out, run, "final")
    except ValueError as err:  # ResultError included
        raise fail(str(err).splitlines()[0]) from None
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(output_lock(out, argv=command))
        except OutputLocked as err:
            raise fail(str(err)) from None
        with _opened(args, tool, path, name, runs, command) as result:
            yield result


@contextlib.contextmanager
def _opened(args: argparse.Namespace, tool: str, path: Path, name: str, runs: Sequence[str], command: list[str]) -> Iterator[Result]:
    out = path.parent
    _recover_overwrite(path, name)
    stored = _stored_runs(path, name)
    if not (args.resume or args.overwrite):
        stale = layout.holds_run_files(out, runs)
        if stale and stored is None:
            raise fail(f"{out} holds checkpoints or state of run {stale[0]} that {path} does not list; "
                       "pass --overwrite to replace them or choose another --out")
    owned = {*runs, *(stored or ())}  # the runs asked for now and those a replaced result held
    try:
        result = open_result(path, name, tool=tool, config=experiment_config(args), resume=args.resume,
                             overwrite=args.overwrite, seed=args.seed, argv=command,
                             needed_bytes=layout.run_files_bytes(out, owned))
    except ResultError as err:
        raise fail(str(err)) from None
    if args.overwrite:
        layout.set_aside(out, name, owned)
    committed = False
    try:
        with result:
            started = time.perf_counter()
            try:
                yield result
            finally:
                result.group.attrs["total_seconds"] = float(result.group.attrs.get("total_seconds", 0.0)) + time.perf_counter() - started
        committed = True
    except (ResultError, UnreadableData) as err:  # a full disk while writing (Result says what is intact); a damaged curve
        raise fail(str(err)) from None
    except DurableWriteError as err:  # a checkpoint or state file: its own line, naming it
        raise fail(str(err).splitlines()[0]) from None
    except OSError as err:
        if is_disk_full(err):
            raise fail(disk_full_message(path)) from None
        raise
    finally:
        if args.overwrite:
            (layout.drop_set_aside if committed else layout.restore_set_aside)(out, name, *(() if committed else (owned,)))
