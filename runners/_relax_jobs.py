"""One training run of an experiment, described by plain data so that it can run in another process.

A :class:`RunSpec` says what to train (space, starting point, epochs, snapshots); a
:class:`RunContext` says with what (data, architecture, optimizer, seed, output folder). Both are
frozen and picklable. :func:`execute` builds the starting model, trains it with the shared loop
(:func:`runners.training.train`), saves the final checkpoint and returns a summary; every epoch's
record goes to ``emit`` as soon as it exists (the parent process writes it to HDF5).

File layout below the output folder ``out``::

    results.h5                        the HDF5 store (written by the parent only)
    checkpoints/<run>/epoch_<k>.pt    snapshots at the epochs other runs start from
    checkpoints/<run>/final.pt        the trained model
    state/<run>.pt                    per-epoch resume state, deleted when the run is done
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

import embeddings
from results import load_checkpoint, save_checkpoint
from runners.data import load_data
from runners.training import EpochRecord, TrainConfig, evaluate, train

Space = Literal["cnn", "elcn", "efcn", "fcn"]


@dataclass(frozen=True)
class RunSpec:
    """What one run trains.

    Attributes:
        name: the run's name (HDF5 group ``/runs/<name>``, checkpoint folder).
        space: the space it trains in.
        epochs: epochs on its own clock (0 = the moment it is created).
        parent: the run whose snapshot it starts from (``""``: a fresh initialisation).
        parent_epoch: the parent's snapshot epoch it starts from.
        init: a checkpoint file to start from instead (``runners.train --init``).
        snapshots: epochs at which to save checkpoints for other runs.
        attrs: protocol attributes written to its HDF5 group (``t_w``, ``tw1``, ``tw2``).
    """

    name: str
    space: Space
    epochs: int
    parent: str = ""
    parent_epoch: int = 0
    init: str = ""
    snapshots: tuple[int, ...] = ()
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunContext:
    """What every run of an experiment shares."""

    out: str
    data: str
    data_root: str | None
    download: bool
    n_train: int | None
    n_test: int | None
    augment: bool
    arch: str
    arch_kwargs: dict[str, Any]
    config: TrainConfig
    seed: int
    device: str
    resume: bool
    progress: bool
    max_bytes: int | None = None  # parameter budget of an embedding (None: half the free memory of the device)

    def snapshot_path(self, run: str, epoch: int) -> Path:
        return Path(self.out) / "checkpoints" / run / f"epoch_{epoch}.pt"

    def final_path(self, run: str) -> Path:
        return Path(self.out) / "checkpoints" / run / "final.pt"

    def state_path(self, run: str) -> Path:
        return Path(self.out) / "state" / f"{run}.pt"

    def load(self):
        return load_data(
            self.data, root=self.data_root, download=self.download, seed=self.seed,
            n_train=self.n_train, n_test=self.n_test, augment=self.augment,
        )


def fresh_cnn(context: RunContext, input_shape: tuple[int, ...], num_classes: int) -> torch.nn.Module:
    """The CNN at initialisation, the same for a given seed whatever else the process did."""
    with torch.random.fork_rng(devices=[]):
        # nn.Module constructors draw from torch's global RNG; fork_rng keeps that draw local.
        torch.manual_seed(context.seed)
        return embeddings.build_model(
            context.arch, **{"input_shape": input_shape, "num_classes": num_classes, **context.arch_kwargs}
        )


def starting_model(spec: RunSpec, context: RunContext, input_shape: tuple[int, ...], num_classes: int) -> torch.nn.Module:
    """The model a run starts from: a fresh init, or its parent's snapshot embedded into ``spec.space``."""
    if spec.init or spec.parent:
        model, _ = load_checkpoint(spec.init or context.snapshot_path(spec.parent, spec.parent_epoch))
    else:
        model = fresh_cnn(context, input_shape, num_classes)
        if spec.space == "fcn":
            return embeddings.fcn_of_same_size(model, generator=torch.Generator().manual_seed(context.seed),
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
        f"{keep}_only_acc": evaluate(embeddings.mask_blocks(model, keep), batches, device=device)[1]
        for keep in ("local", "offlocal")
    }


def execute(spec: RunSpec, context: RunContext, emit: Callable[[str, EpochRecord], None]) -> dict[str, Any]:
    """Train one run; returns the attributes of its finished HDF5 group."""
    cpu_started = time.process_time()
    data = context.load()
    model = starting_model(spec, context, data.input_shape, data.num_classes)
    config = dataclasses.replace(context.config, epochs=spec.epochs)
    result = train(
        model, data, config=config, seed=context.seed, device=context.device,
        state_path=context.state_path(spec.name), resume=context.resume,
        snapshots={epoch: context.snapshot_path(spec.name, epoch) for epoch in spec.snapshots},
        snapshot_meta={"run": spec.name, **spec.attrs}, on_epoch=lambda record: emit(spec.name, record),
        progress=context.progress, desc=spec.name,
    )
    final = result.final
    save_checkpoint(context.final_path(spec.name), result.model, epoch=spec.epochs, run=spec.name, test_acc=final.test_acc, **spec.attrs)
    context.state_path(spec.name).unlink(missing_ok=True)
    return {
        "final_train_loss": final.train_loss, "final_train_acc": final.train_acc,
        "final_test_loss": final.test_loss, "final_test_acc": final.test_acc, "final_delta": final.delta,
        # The paper compares the best test accuracy along each history (its Fig. 3); keep both.
        "best_test_acc": max(record.test_acc for record in result.history),
        **masked_accuracies(result.model, data.batches("test", config.eval_batch_size), context.device),
        "num_params": sum(p.numel() for p in result.model.parameters()),
        "peak_memory_bytes": result.peak_memory_bytes,
        # CPU seconds (all threads of this process) tell the cost apart from the machine's load.
        "seconds": result.seconds, "cpu_seconds": time.process_time() - cpu_started, "resumed_from": result.resumed_from,
        "checkpoint": str(context.final_path(spec.name).relative_to(context.out)),
    }
