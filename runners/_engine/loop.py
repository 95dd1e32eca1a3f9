"""The one training loop, shared by every runner: CNNs, eLCNs, eFCNs and FCNs alike.

Per epoch it records exact full-data train/test loss and accuracy (``landscape.evaluate``: mean
loss -- cross entropy unless ``TrainConfig.loss`` says otherwise -- and argmax accuracy fraction, eval mode, after the epoch's steps), the learning rate, and for relaxed models the paper's distance from the CNN subspace
:math:`\\delta = \\lVert\\theta_{\\text{off-local}}\\rVert_2 / \\lVert\\theta\\rVert_2`
(``embeddings.offlocal_ratio``). Row 0 of a history is the model as given, before any step.

Resuming: with ``state_path`` the loop saves, after every epoch, the model, the optimizer, the
shuffling generator, torch's RNG (dropout) and the history, atomically (``results.atomic_save``) and
with a SHA-256 of its contents that a resume verifies (a flipped bit is one error naming the file; state
files of format ``/1``, before checksums, are resumed with a warning). ``resume=True`` continues
from that file, so a killed run loses at most one epoch and ends with the same numbers as an
uninterrupted one: bit for bit on CPU with the same thread count (tested), and up to cuDNN's own
nondeterminism on GPU.

Divergence: training stops at the end of the first epoch in which a step's loss or the epoch's full-data
training loss is NaN or infinite; that epoch is returned as ``TrainResult.diverged_epoch``, and its row,
whose accuracies would be the argmax of NaN logits, is neither recorded nor emitted nor snapshotted.
The steps' losses are checked once per epoch (a flag on the device), not after every step, so
the check costs no GPU synchronisation per step.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import resource
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Literal

import torch
from torch import nn

import embeddings
from landscape import Progress, evaluate
from results import atomic_save, payload_sha256, save_checkpoint
from runners._engine.data import Dataset
from runners._engine.losses import check_loss_name, resolve_loss

__all__ = [
    "TrainConfig", "EpochRecord", "TrainResult", "train", "on_device", "peak_memory_bytes", "reset_peak_memory", "HISTORY_COLUMNS", "STATE_FORMAT",
]

STATE_FORMAT = "needle-train-state/2"
_UNVERIFIED_STATE_FORMAT = "needle-train-state/1"  # before checksums: resumed with a warning


@dataclass(frozen=True)
class TrainConfig:
    """How to train. Defaults are the MNIST-1D reference: Adam 1e-3, batch 100, 60 epochs.

    Attributes:
        epochs: number of passes over the training set.
        batch_size: examples per step.
        optimizer: ``"adam"`` or ``"sgd"`` (with ``momentum``; the paper's CIFAR runs use plain SGD,
            lr 0.1, batch 250).
        lr: base learning rate.
        momentum: SGD momentum (ignored by Adam).
        weight_decay: L2 penalty coefficient of the optimizer.
        schedule: learning rate per epoch ``e`` of ``epochs``: ``constant`` (``lr``), ``cosine``
            (``lr (1 + cos(pi e / epochs)) / 2``) or ``step`` (``lr * gamma ** (e // step_every)``).
        step_every, gamma: the ``step`` schedule.
        eval_batch_size: batch size of the per-epoch evaluation (no effect on the numbers).
        loss: the objective of the steps and of the recorded ``train_loss`` / ``test_loss``: ``ce``
            (cross entropy), ``mse`` (one-hot targets) or ``package.module:function``
            (:mod:`runners._engine.losses`); accuracies are argmax-based whatever the loss.
        amp: mixed precision for the training steps (bfloat16 autocast; the per-epoch evaluation
            and every landscape probe stay in float32).
    """

    epochs: int = 60
    batch_size: int = 100
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: Literal["constant", "cosine", "step"] = "constant"
    step_every: int = 30
    gamma: float = 0.1
    eval_batch_size: int = 1000
    amp: bool = False
    loss: str = "ce"

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "step_every", "eval_batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < (0 if name == "epochs" else 1):
                raise ValueError(f"{name} must be a {'non-negative' if name == 'epochs' else 'positive'} integer, got {value!r}")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if self.schedule not in ("constant", "cosine", "step"):
            raise ValueError(f"schedule must be 'constant', 'cosine' or 'step', got {self.schedule!r}")
        for name in ("lr", "momentum", "weight_decay", "gamma"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0 or (name == "lr" and value == 0):
                raise ValueError(f"{name} must be a finite {'positive' if name == 'lr' else 'non-negative'} number, got {value!r}")
        check_loss_name(self.loss)

    def lr_at(self, epoch: int) -> float:
        """Learning rate during epoch ``epoch`` (0-based).

        Example:
            >>> TrainConfig(lr=1.0, epochs=4, schedule="cosine").lr_at(2)
            0.5
            >>> TrainConfig(lr=1.0, schedule="step", step_every=2, gamma=0.5).lr_at(5)
            0.25
        """
        if self.schedule == "cosine":
            return self.lr * 0.5 * (1.0 + math.cos(math.pi * epoch / max(self.epochs, 1)))
        if self.schedule == "step":
            return self.lr * self.gamma ** (epoch // self.step_every)
        return self.lr


@dataclass(frozen=True)
class EpochRecord:
    """One point of a training history (accuracies are fractions in [0, 1])."""

    epoch: int
    train_loss: float
    train_acc: float
    test_loss: float
    test_acc: float
    delta: float
    lr: float

    def row(self) -> dict[str, float]:
        return asdict(self)


HISTORY_COLUMNS = tuple(f.name for f in fields(EpochRecord))  # the HDF5 history follows the record


@dataclass(frozen=True)
class TrainResult:
    """A finished training run.

    Attributes:
        model: the trained model (eval mode).
        history: one record per epoch, starting with epoch 0 (before training).
        resumed_from: epochs restored from the state file (0 for a fresh run).
        seconds: wall time of this call.
        peak_memory_bytes: peak memory of the call (:func:`peak_memory_bytes` after
            :func:`reset_peak_memory`): allocated GPU memory on a GPU, the resident set on a CPU.
        diverged_epoch: the epoch (1-based, on the run's clock) in which the training loss became
            non-finite, after which training stopped; ``None`` for a run that finished. The history
            then ends at the epoch before, and ``model`` holds the non-finite weights.
    """

    model: nn.Module
    history: tuple[EpochRecord, ...]
    resumed_from: int
    seconds: float
    peak_memory_bytes: int = 0
    diverged_epoch: int | None = None

    @property
    def final(self) -> EpochRecord:
        return self.history[-1]


def _delta(model: nn.Module) -> float:
    return float("nan") if getattr(model, "space", "cnn") == "cnn" else embeddings.offlocal_ratio(model)


def _record(model: nn.Module, data: Dataset, config: TrainConfig, epoch: int, lr: float, device) -> EpochRecord:
    loss_fn = resolve_loss(config.loss)
    seen = evaluate(model, loss_fn, data.batches("train", config.eval_batch_size), device=device)
    held_out = evaluate(model, loss_fn, data.batches("test", config.eval_batch_size), device=device)
    return EpochRecord(epoch, seen.loss, seen.accuracy, held_out.loss, held_out.accuracy, _delta(model), lr)


@contextlib.contextmanager
def _training_precision(device: torch.device) -> Iterator[None]:
    """cuDNN autotuning and TF32 matmuls/convolutions for the training steps on a GPU, restored after.

    TF32 keeps 10 mantissa bits: harmless for SGD noise, fatal for Hessian probes (Lanczos on float32
    products), which is why the setting is scoped here instead of set globally.
    """
    flags = (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags


_STATUS, _CLEAR_REFS = Path("/proc/self/status"), Path("/proc/self/clear_refs")


def reset_peak_memory(device: torch.device) -> None:
    """Start measuring a new peak: CUDA's allocator statistics, or Linux's resident-set high-water mark.

    Without the reset a CPU peak would be the process's since it started, which importing torch's
    CUDA build alone sets at about 1 GiB, hiding what a run adds. Writing ``5`` to
    ``/proc/self/clear_refs`` resets ``VmHWM`` (Linux >= 4.0); elsewhere the peak stays the process's.
    """
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        pass


def peak_memory_bytes(device: torch.device) -> int:
    """Peak allocated GPU memory on a CUDA ``device``; on a CPU the peak resident set since :func:`reset_peak_memory`.

    The CPU value is Linux's ``VmHWM``, or ``getrusage``'s maxrss (the process's peak since it started)
    where ``/proc`` is not available.
    """
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    try:
        fields = dict(line.split(":", 1) for line in _STATUS.read_text().splitlines() if ":" in line)
        return int(fields["VmHWM"].split()[0]) * 1024  # kB
    except (OSError, KeyError, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def on_device(data: Dataset, device: torch.device) -> Dataset:
    """The data set moved to ``device`` once (GPU), instead of every batch at every step."""
    if device.type == "cpu":
        return data
    return dataclasses.replace(data, x_train=data.x_train.to(device), y_train=data.y_train.to(device),
                               x_test=data.x_test.to(device), y_test=data.y_test.to(device))


def _optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def _save_state(path: Path, payload: dict) -> None:
    atomic_save({**payload, "sha256": payload_sha256(payload)}, path)


def _intact(state: dict) -> bool:
    try:
        return state.get("sha256") == payload_sha256(state)
    except (RecursionError, TypeError, ValueError, RuntimeError):
        return False  # contents the digest cannot walk were not written by _save_state


def _load_state(path: Path, config: TrainConfig, seed: int) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any unreadable file means the same thing to the user
        raise ValueError(f"training state {path} is unreadable ({type(err).__name__}); delete it or rerun with --overwrite") from None
    if not isinstance(state, dict) or state.get("format") not in (STATE_FORMAT, _UNVERIFIED_STATE_FORMAT):
        raise ValueError(f"{path} is not a training state ({STATE_FORMAT}); delete it or rerun with --overwrite")
    if state["format"] == _UNVERIFIED_STATE_FORMAT:
        warnings.warn(f"training state {path} ({_UNVERIFIED_STATE_FORMAT}) carries no checksum; resuming from it unverified", stacklevel=3)
    elif not _intact(state):
        raise ValueError(f"training state {path} fails its SHA-256 check: it changed after it was written (disk or copy "
                         f"error); delete it (the run then trains again from the start) or rerun with --overwrite")
    # States written before the loss was configurable trained with cross entropy.
    if {"loss": "ce", **state["config"]} != asdict(config) or state["seed"] != seed:
        raise ValueError(
            f"training state {path} was written with another configuration or seed; resume with the "
            f"same options, or rerun with --overwrite to start again"
        )
    return state


def train(
    model: nn.Module,
    data: Dataset,
    *,
    config: TrainConfig,
    seed: int,
    device: torch.device | str = "cpu",
    state_path: str | os.PathLike | None = None,
    resume: bool = False,
    snapshots: Mapping[int, str | os.PathLike] | None = None,
    snapshot_meta: Mapping | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    replay: bool = True,
    progress: bool = False,
    desc: str = "train",
) -> TrainResult:
    """Train ``model`` in place with ``config.loss`` (cross entropy by default) and return its history.

    Args:
        model: any classifier; relaxed models (``space`` other than ``"cnn"``) also get ``delta``.
        data: the data set; ``data.shuffled_batches`` draws each epoch's order (and augmentation).
        config: optimizer, schedule, batch size, epochs.
        seed: seed of the shuffling generator and of torch's RNG inside the loop (dropout); the
            caller's global RNG state is left untouched.
        device: where to train.
        state_path: file for the per-epoch resume state (kept after the run; delete it when done).
        resume: continue from ``state_path`` when it exists (it must match ``config`` and ``seed``).
        snapshots: epoch -> checkpoint path, saved with ``results.save_checkpoint`` when the model
            has completed that many epochs (0 = before training).
        snapshot_meta: extra ``meta`` of every snapshot (the epoch is added).
        on_epoch: called with each record as soon as it exists; after a resume the restored
            records are replayed first, so a writer using ``CurveWriter.append_at(record.epoch, ...)``
            ends with exactly one row per epoch.
        replay: replay the restored records to ``on_epoch`` (``False`` when ``on_epoch`` adds values
            that only the live model gives, and the restored rows are already written).
        progress: show progress over epochs (a bar on a terminal, else a line every ~30 s: ``landscape.Progress``).
        desc: the bar's label.
    """
    started = time.perf_counter()
    snapshots = {int(k): Path(v) for k, v in (snapshots or {}).items()}
    beyond = [k for k in snapshots if not 0 <= k <= config.epochs]
    if beyond:
        raise ValueError(f"snapshot epochs {sorted(beyond)} lie outside 0..{config.epochs}; choose epochs within the run")
    state_path = Path(state_path) if state_path is not None else None
    device = torch.device(device)
    reset_peak_memory(device)
    data = on_device(data, device)
    model.to(device)
    optimizer = _optimizer(model, config)
    loss_fn = resolve_loss(config.loss)
    generator = torch.Generator().manual_seed(seed)
    emit = on_epoch or (lambda record: None)

    def snapshot(epoch: int) -> None:
        if epoch in snapshots:
            save_checkpoint(snapshots[epoch], model, epoch=epoch, **dict(snapshot_meta or {}))

    devices = [torch.device(device).index or 0] if torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        history: list[EpochRecord] = []
        if resume and state_path is not None and state_path.is_file():
            state = _load_state(state_path, config, seed)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            generator.set_state(state["generator"])
            torch.set_rng_state(state["torch_rng"])
            if devices and "cuda_rng" in state:
                torch.cuda.set_rng_state(state["cuda_rng"], devices[0])
            history = [EpochRecord(**row) for row in state["history"]]
        resumed_from = len(history) - 1 if history else 0
        for record in history if replay else ():
            emit(record)
        if not history:
            history.append(_record(model, data, config, 0, float("nan"), device))
            emit(history[0])
            snapshot(0)
        diverged_epoch = None
        bar = Progress(config.epochs, desc=desc, enabled=progress, leave=False, initial=resumed_from)
        for epoch in range(resumed_from, config.epochs):
            lr = config.lr_at(epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr
            model.train()
            finite = torch.ones((), dtype=torch.bool, device=device)
            with _training_precision(device):
                for x, y in data.shuffled_batches(config.batch_size, generator=generator):
                    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                    optimizer.zero_grad(set_to_none=True)
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.amp):
                        loss = loss_fn(model(x), y)
                    finite &= torch.isfinite(loss.detach())
                    loss.backward()
                    optimizer.step()
            record = _record(model, data, config, epoch + 1, lr, device)
            if not (bool(finite) and math.isfinite(record.train_loss)):
                diverged_epoch = epoch + 1
                break
            history.append(record)
            emit(record)
            snapshot(epoch + 1)
            bar.set_postfix(test_acc=f"{record.test_acc:.3f}", loss=f"{record.train_loss:.3g}")
            bar.update(1)
            if state_path is not None:
                _save_state(state_path, {
                    "format": STATE_FORMAT, "config": asdict(config), "seed": seed,
                    "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                    "optimizer": optimizer.state_dict(), "generator": generator.get_state(),
                    "torch_rng": torch.get_rng_state(), "history": [r.row() for r in history],
                    **({"cuda_rng": torch.cuda.get_rng_state(devices[0])} if devices else {}),
                })
        bar.close()
    model.eval()
    return TrainResult(model=model, history=tuple(history), resumed_from=resumed_from, seconds=time.perf_counter() - started,
                       peak_memory_bytes=peak_memory_bytes(device), diverged_epoch=diverged_epoch)

