"""One run of ``runners.train`` or ``runners.relax``: build its starting model, train it, save it.

:func:`execute` is the executor of those two tools (:mod:`runners._engine.specs`): it builds the
starting model (a fresh initialisation, an ``--init`` checkpoint or its parent's snapshot, embedded
into the run's space), trains it with the one loop (:func:`runners._engine.loop.train`), saves the
final checkpoint, deletes the resume state and returns the run's summary. Every epoch's row goes to
``emit`` as soon as it exists (the parent process writes it to HDF5).

A run whose training loss becomes non-finite (:func:`~runners._engine.loop.train`'s ``diverged_epoch``)
ends with ``status="diverged"`` and ``diverged_epoch``: no ``final.pt`` and no final accuracies (the
argmax of NaN logits is no accuracy); its snapshots from before the divergence stay.

The final checkpoint carries the run's whole summary and history in its ``meta`` (``outcome``,
``history``), and is written atomically: a process killed after it was written and before the parent
marked the run ``done`` finds it on ``--resume`` and returns that summary instead of training again.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import torch

import embeddings
from landscape import evaluate
from results import CheckpointError, load_checkpoint, save_checkpoint
from runners._engine.loop import train
from runners._engine.specs import Emit, Outcome, RunContext, RunSpec

__all__ = ["fresh_cnn", "starting_model", "masked_accuracies", "execute"]


def fresh_cnn(context: RunContext, input_shape: tuple[int, ...], num_classes: int, seed: int | None = None) -> torch.nn.Module:
    """The CNN at initialisation, the same for a given seed whatever else the process did.

    The data's ``input_shape`` is always given (forwarded or recorded by ``build_model``);
    ``num_classes`` only to a factory that takes it, so any ``package.module:factory`` builds.
    """
    defaults = {"input_shape": input_shape}
    if embeddings.factory_accepts(context.arch, "num_classes"):
        defaults["num_classes"] = num_classes
    with torch.random.fork_rng(devices=[]):
        # nn.Module constructors draw from torch's global RNG; fork_rng keeps that draw local.
        torch.manual_seed(context.seed if seed is None else seed)
        return embeddings.build_model(context.arch, **{**defaults, **context.arch_kwargs})


def starting_model(spec: RunSpec, context: RunContext, input_shape: tuple[int, ...], num_classes: int) -> torch.nn.Module:
    """The model a run starts from: a fresh init, ``--init`` or its parent's snapshot, embedded into ``spec.space``.

    An ``--init`` that is a plain state dict is loaded into a fresh ``--model`` (ours rebuild themselves).
    """
    seed = context.seed_of(spec)
    if spec.init:
        model, _ = load_checkpoint(spec.init, model=fresh_cnn(context, input_shape, num_classes, seed))
    elif spec.parent:
        model, _ = load_checkpoint(context.snapshot_path(spec.parent, spec.parent_epoch))
    else:
        model = fresh_cnn(context, input_shape, num_classes, seed)
        if spec.space == "fcn":
            return embeddings.fcn_of_same_size(model, generator=torch.Generator().manual_seed(seed),
                                               max_bytes=context.max_bytes)
    # Embedded on the training device directly: AlexNet's eFCN need never exist in host memory.
    if spec.space == "elcn" and model.space != "elcn":
        return embeddings.to_elcn(model, max_bytes=context.max_bytes, device=context.device)
    if spec.space == "efcn" and model.space != "efcn":
        return embeddings.to_efcn(model, max_bytes=context.max_bytes, device=context.device)
    return model


def masked_accuracies(model: torch.nn.Module, batches, device: str) -> dict[str, float]:
    """Test accuracy with only the local / only the off-local blocks (eFCN-like spaces; NaN otherwise)."""
    if model.space not in ("efcn", "fcn"):
        return {"local_only_acc": math.nan, "offlocal_only_acc": math.nan}
    return {
        f"{keep}_only_acc": evaluate(embeddings.mask_blocks(model, keep), None, batches, device=device).accuracy  # None: cross-entropy
        for keep in ("local", "offlocal")
    }


def finished_outcome(path: Path, spec: RunSpec) -> tuple[dict, list[dict]] | None:
    """The summary and history a complete ``final.pt`` of ``spec`` carries, or ``None`` (absent, unreadable, another run's).

    Only a checkpoint of this run at its last epoch counts; one from before this format (no ``outcome``)
    does not, and the run trains again.
    """
    if not path.is_file():
        return None
    try:
        _, meta = load_checkpoint(path)
    except CheckpointError:  # a damaged final checkpoint is no proof of a finished run: train it again
        return None
    complete = meta.get("run") == spec.name and meta.get("epoch") == spec.epochs and isinstance(meta.get("outcome"), dict)
    return (meta["outcome"], list(meta.get("history", []))) if complete else None


def _diverged(spec: RunSpec, context: RunContext, result, data, cpu_started: float) -> Outcome:
    """The group attributes of a run stopped at its first non-finite loss: when, and the costs, no accuracy."""
    context.state_path(spec.name).unlink(missing_ok=True)  # the run is over; resuming would diverge again
    last = result.history[-1]
    return Outcome({
        "status": "diverged", "diverged_epoch": result.diverged_epoch, "last_finite_epoch": last.epoch,
        "last_finite_train_loss": last.train_loss, "lr": context.config.lr, "optimizer": context.config.optimizer,
        "num_params": sum(p.numel() for p in result.model.parameters()),
        "num_train": len(data.y_train), "num_test": len(data.y_test), "peak_memory_bytes": result.peak_memory_bytes,
        "seconds": result.seconds, "cpu_seconds": time.process_time() - cpu_started, "resumed_from": result.resumed_from,
    })


def execute(spec: RunSpec, context: RunContext, emit: Emit) -> Outcome:
    """Train one run; returns the attributes of its finished HDF5 group."""
    cpu_started = time.process_time()
    if context.resume:
        finished = finished_outcome(context.final_path(spec.name), spec)
        if finished is not None:
            outcome, history = finished
            for row in history:  # the parent may have written only part of the curve before the kill
                emit(spec.name, row)
            context.state_path(spec.name).unlink(missing_ok=True)
            return Outcome(outcome)
    data = context.load()
    model = starting_model(spec, context, data.input_shape, data.num_classes)
    config = dataclasses.replace(context.config, epochs=spec.epochs)
    result = train(
        model, data, config=config, seed=context.seed_of(spec), device=context.device,
        state_path=context.state_path(spec.name), resume=context.resume,
        snapshots={epoch: context.snapshot_path(spec.name, epoch) for epoch in spec.snapshots},
        snapshot_meta={"run": spec.name, **spec.attrs}, on_epoch=lambda record: emit(spec.name, record.row()),
        progress=context.progress, desc=spec.name,
    )
    if result.diverged_epoch is not None:
        return _diverged(spec, context, result, data, cpu_started)
    final = result.final
    attrs = {
        "final_train_loss": final.train_loss, "final_train_acc": final.train_acc,
        "final_test_loss": final.test_loss, "final_test_acc": final.test_acc, "final_delta": final.delta,
        # The paper compares the best test accuracy along each history (its Fig. 3); keep both.
        "best_test_acc": max(record.test_acc for record in result.history),
        **masked_accuracies(result.model, data.batches("test", config.eval_batch_size), context.device),
        "num_params": sum(p.numel() for p in result.model.parameters()),
        # The sizes the accuracies rest on: one test sample is 100 / num_test points.
        "num_train": len(data.y_train), "num_test": len(data.y_test),
        "peak_memory_bytes": result.peak_memory_bytes,
        # CPU seconds (all threads of this process) tell the cost apart from the machine's load.
        "seconds": result.seconds, "cpu_seconds": time.process_time() - cpu_started, "resumed_from": result.resumed_from,
        # The result file lies in context.out: relative to it is relative to the file's folder.
        "checkpoint": str(context.final_path(spec.name).relative_to(context.out)),
    }
    save_checkpoint(context.final_path(spec.name), result.model, epoch=spec.epochs, run=spec.name, test_acc=final.test_acc,
                    outcome=attrs, history=[record.row() for record in result.history], **spec.attrs)
    context.state_path(spec.name).unlink(missing_ok=True)
    return Outcome(attrs)
