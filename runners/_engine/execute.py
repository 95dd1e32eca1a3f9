"""One run of ``runners.train`` or ``runners.relax``: build its starting model, train it, save it.

:func:`execute` is the executor of those two tools (:mod:`runners._engine.specs`): it builds the
starting model (a fresh initialisation, an ``--init`` checkpoint or its parent's snapshot, embedded
into the run's space), trains it with the one loop (:func:`runners._engine.loop.train`), saves the
final checkpoint, deletes the resume state and returns the run's summary. Every epoch's row goes to
``emit`` as soon as it exists (the parent process writes it to HDF5).
"""

from __future__ import annotations

import dataclasses
import math
import time

import torch

import embeddings
from landscape import evaluate
from results import load_checkpoint, save_checkpoint
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
    """The model a run starts from: a fresh init, or its parent's snapshot embedded into ``spec.space``."""
    seed = context.seed_of(spec)
    if spec.init or spec.parent:
        model, _ = load_checkpoint(spec.init or context.snapshot_path(spec.parent, spec.parent_epoch))
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


def execute(spec: RunSpec, context: RunContext, emit: Emit) -> Outcome:
    """Train one run; returns the attributes of its finished HDF5 group."""
    cpu_started = time.process_time()
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
    final = result.final
    save_checkpoint(context.final_path(spec.name), result.model, epoch=spec.epochs, run=spec.name, test_acc=final.test_acc, **spec.attrs)
    context.state_path(spec.name).unlink(missing_ok=True)
    return Outcome({
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
    })
