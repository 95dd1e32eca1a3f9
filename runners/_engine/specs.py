"""Runs described by plain data, so that they can train in another process.

A :class:`RunSpec` says what one run trains (space, starting point, epochs, snapshots, seed); a
:class:`RunContext` says with what (data, architecture, optimizer, output folder) -- what every run
of an experiment shares. Both are frozen and picklable. An *executor* (``execute(spec, context,
emit) -> Outcome``) trains one run: it sends every history row to ``emit`` as soon as it exists
and returns the :class:`Outcome` that the parent process writes to the run's HDF5 group.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from runners._engine import layout
from runners._engine.data import Dataset, load_data
from runners._engine.loop import TrainConfig

__all__ = ["Space", "RunSpec", "RunContext", "Outcome", "Emit", "Executor"]

Space = Literal["cnn", "elcn", "efcn", "fcn"]


@dataclass(frozen=True)
class RunSpec:
    """What one run trains.

    Attributes:
        name: the run's name (HDF5 group ``runs/<name>``, checkpoint folder, state file).
        space: the space it trains in.
        epochs: epochs on its own clock (0 = the moment it is created).
        parent: the run whose snapshot it starts from (``""``: a fresh initialisation).
        parent_epoch: the parent's snapshot epoch it starts from.
        init: a checkpoint file to start from instead (``runners.train --init``).
        snapshots: epochs at which to save checkpoints for other runs.
        seed: the run's own seed (initialisation, shuffling); ``None``: the experiment's seed.
        attrs: attributes written to its HDF5 group when it starts (``t_w``; an ExpandNets ``mode``).
    """

    name: str
    space: Space
    epochs: int
    parent: str = ""
    parent_epoch: int = 0
    init: str = ""
    snapshots: tuple[int, ...] = ()
    seed: int | None = None
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunContext:
    """What every run of an experiment shares.

    Attributes:
        out: the output folder (file layout: :mod:`runners._engine.layout`).
        data, data_root, download, n_train, n_test, augment: the data set (:func:`load_data`: a built-in name,
            ``npz:PATH``, ``folder:PATH`` or ``package.module:function``).
        arch, arch_kwargs: the model, by its name in the embeddings registry or an import path
            ``package.module:factory`` (``embeddings.build_model``), and the factory's keyword arguments.
        config: the training loop's settings, its ``loss`` included (each run replaces ``epochs``).
        seed: the experiment's seed (data of the ``fake`` set; runs without their own seed).
        device: where runs train.
        resume: continue unfinished runs from their per-epoch state.
        progress: show progress bars.
        max_bytes: parameter budget of an embedding (``None``: half the free memory of the device).
    """

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
    max_bytes: int | None = None

    def seed_of(self, spec: RunSpec) -> int:
        """The seed ``spec`` trains with."""
        return self.seed if spec.seed is None else spec.seed

    def snapshot_path(self, run: str, epoch: int) -> Path:
        return layout.snapshot_path(self.out, run, epoch)

    def final_path(self, run: str) -> Path:
        return layout.final_path(self.out, run)

    def state_path(self, run: str) -> Path:
        return layout.state_path(self.out, run)

    def load(self) -> Dataset:
        # The fake set takes the model's --input-shape and classes (only it has no shape of its own).
        shaped = {key: tuple(value) if key == "input_shape" else value
                  for key, value in self.arch_kwargs.items() if key in ("input_shape", "num_classes")}
        return load_data(
            self.data, root=self.data_root, download=self.download, seed=self.seed,
            n_train=self.n_train, n_test=self.n_test, augment=self.augment, **(shaped if self.data == "fake" else {}),
        )


@dataclass(frozen=True)
class Outcome:
    """What a finished run leaves in its HDF5 group.

    Attributes:
        attrs: attributes of the group (final accuracies, seconds, the checkpoint's path relative to
            the output folder, ...).
        curves: extra curves, ``{name: {column: values}}``; the first column is the curve's index.
    """

    attrs: dict[str, Any]
    curves: Mapping[str, Mapping[str, np.ndarray]] = field(default_factory=dict)


Emit = Callable[[str, dict[str, float]], None]
Executor = Callable[[RunSpec, RunContext, Emit], Outcome]
