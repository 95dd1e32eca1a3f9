"""Run a set of dependent trainings, in parallel processes, with one process writing the HDF5 file.

HDF5 files take one writer, so workers never touch the result file: they send each epoch's row
through a queue and the parent appends it (``CurveWriter.append_at``, so rows replayed after a
resume land once). A run starts when the runs it needs (its parent) are done. With ``jobs=1``
everything runs in this process, in dependency order. Every tool's runs go through here, each
with its executor (:mod:`runners._engine.specs`): ``execute`` for train and relax, the ExpandNets
executor for ``runners.expandnets``.

The resume rule: a run whose group says ``status == "done"`` is skipped, unless the checkpoint it
records is gone: that run is named on stderr (one line for all of them) and trained again. Any other
run restarts from its per-epoch state file (:mod:`runners._engine.layout`), its curve cut back to the
replayed rows.

Divergence: a run whose loss became non-finite ends with ``status="diverged"`` (its executor says so)
and the others go on: independent runs, and children that start from a snapshot taken before their
parent diverged. A child whose snapshot epoch is at or after its parent's ``diverged_epoch`` (the
snapshot never existed) ends ``status="skipped"`` with ``skipped_because``; so do its own children.
Diverged and skipped runs are not retrained by ``--resume`` (the same seed diverges again); the
caller reports them (:func:`results.unfinished_runs`) and exits non-zero.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue as queue_module
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

import h5py
import numpy as np
import torch

from results import CurveWriter, write_array, write_attrs
from runners._engine.execute import execute
from runners._engine.loop import HISTORY_COLUMNS
from runners._engine.specs import Executor, Outcome, RunContext, RunSpec

__all__ = ["run_all", "default_threads", "ENDED"]

ENDED = ("done", "diverged", "skipped")
"""Statuses of a run that will not train again on ``--resume``."""


class _Recorder:
    """The parent's view of the runs' parent group: opens a run's group and curve, appends rows, closes it."""

    def __init__(self, runs: h5py.Group, columns: Sequence[str]) -> None:
        self.runs = runs
        self.columns = tuple(columns)
        self.curves: dict[str, CurveWriter] = {}

    def status(self, name: str) -> str | None:
        group = self.runs.get(name)
        return None if group is None else group.attrs.get("status")

    def done(self, name: str) -> bool:
        return self.status(name) == "done"

    def ended(self, name: str) -> bool:
        return self.status(name) in ENDED

    def missing_checkpoint(self, name: str, out: str) -> Path | None:
        """The final checkpoint a done run records, when it no longer exists."""
        recorded = self.runs[name].attrs.get("checkpoint") if self.done(name) else None
        return None if not recorded or (Path(out) / recorded).is_file() else Path(out) / recorded

    def skip_reason(self, spec: RunSpec) -> str | None:
        """Why ``spec`` cannot start: its parent diverged before the snapshot it starts from, or was skipped."""
        if not spec.parent or spec.init:
            return None
        parent = self.runs.get(spec.parent)
        status = None if parent is None else parent.attrs.get("status")
        if status == "skipped":
            return f"its parent {spec.parent} was skipped"
        if status == "diverged" and spec.parent_epoch >= int(parent.attrs["diverged_epoch"]):
            return f"its parent {spec.parent} diverged in epoch {int(parent.attrs['diverged_epoch'])}, before its snapshot at epoch {spec.parent_epoch}"
        return None

    def skip(self, spec: RunSpec, reason: str) -> None:
        group = self.runs.require_group(spec.name)
        write_attrs(group, {"space": spec.space, "parent": spec.parent, "parent_epoch": spec.parent_epoch,
                            "epochs": spec.epochs, **spec.attrs, "status": "skipped", "skipped_because": reason})

    def start(self, spec: RunSpec) -> None:
        group = self.runs.require_group(spec.name)
        write_attrs(group, {
            "space": spec.space, "parent": spec.parent, "parent_epoch": spec.parent_epoch,
            "epochs": spec.epochs, "status": "running", **spec.attrs,
        })
        self.curves[spec.name] = CurveWriter(group, "history", columns=self.columns, index="epoch")

    def epoch(self, name: str, row: dict[str, float]) -> None:
        self.curves[name].append_at(int(row["epoch"]), **row)

    def finish(self, name: str, outcome: Outcome) -> None:
        group = self.runs[name]
        for curve_name, columns in outcome.curves.items():
            if curve_name in group:  # a run retrained after a kill rewrites its curves whole
                del group[curve_name]
            curve = group.create_group(curve_name)
            for column, values in columns.items():
                write_array(curve, column, np.asarray(values, dtype="f8"))
            curve.attrs["index"] = next(iter(columns))
        write_attrs(group, {"status": "done", **outcome.attrs})  # an executor may say "diverged"


_channel = None  # this worker process's end of the parent's queue, set by _init_worker


def _init_worker(threads: int, channel, parent_pid: int) -> None:
    global _channel
    _channel = channel
    # Parallel runs on few cores: one intra-op thread each, or they fight over the cores.
    torch.set_num_threads(threads)
    # A killed parent leaves its pool workers running; they would keep writing state files that a
    # resumed run also writes. Each worker exits when its parent is gone.
    threading.Thread(target=_exit_with, args=(parent_pid,), daemon=True).start()


def _exit_with(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(0.5)
    os._exit(1)


def _execute_remote(executor: Executor, spec: RunSpec, context: RunContext) -> Outcome:
    outcome = executor(spec, context, lambda name, row: _channel.put((name, row)))
    # Queue puts are flushed by a background thread, possibly after the result comes back: the
    # parent waits for this marker, which follows every row of the run.
    _channel.put((spec.name, None))
    return outcome


def run_all(
    specs: Sequence[RunSpec],
    context: RunContext,
    runs: h5py.Group,
    *,
    executor: Executor = execute,
    columns: Sequence[str] = HISTORY_COLUMNS,
    jobs: int = 1,
    threads: int | None = None,
) -> list[str]:
    """Train every run not yet done, respecting ``parent`` dependencies; returns the names trained.

    Args:
        specs: the runs; a run's ``parent`` must be among them (or already done in ``runs``).
        context: what the runs share.
        runs: the open HDF5 group that holds one group per run, written by this process only.
        executor: trains one run (a module-level function or a picklable object when ``jobs > 1``).
        columns: the history columns of the rows the executor emits.
        jobs: parallel worker processes (1: train here, in order).
        threads: torch threads per worker process, and of this process while it trains with ``jobs=1``
            (so one configuration gives the same numbers whatever ``jobs``); ``None``: left as they are.
    """
    recorder = _Recorder(runs, columns)
    missing = {spec.name: recorder.missing_checkpoint(spec.name, context.out) for spec in specs}
    missing = {name: path for name, path in missing.items() if path is not None}
    if missing:
        print(f"missing checkpoints of finished runs, trained again: {', '.join(map(str, missing.values()))}", file=sys.stderr)
    pending = {spec.name: spec for spec in specs if not recorder.ended(spec.name) or spec.name in missing}
    trained: list[str] = []
    if jobs == 1:
        with _threads(threads):
            for spec in _dependency_order(pending, recorder):
                reason = recorder.skip_reason(spec)
                if reason is not None:
                    recorder.skip(spec, reason)
                    continue
                recorder.start(spec)
                recorder.finish(spec.name, executor(spec, context, recorder.epoch))
                trained.append(spec.name)
        return trained
    spawn = multiprocessing.get_context("spawn")
    channel = spawn.Queue()
    running: dict[Future, str] = {}
    ended: set[str] = set()
    try:
        with ProcessPoolExecutor(
            max_workers=jobs, mp_context=spawn, initializer=_init_worker, initargs=(threads or 1, channel, os.getpid())
        ) as pool:
            while pending or running:
                for name in [n for n, s in pending.items() if not s.parent or recorder.ended(s.parent)]:
                    spec = pending[name]
                    reason = recorder.skip_reason(spec)
                    if reason is not None:
                        recorder.skip(pending.pop(name), reason)
                        continue
                    if len(running) >= jobs:
                        break
                    pending.pop(name)
                    recorder.start(spec)
                    running[pool.submit(_execute_remote, executor, spec, context)] = name
                if not running and not pending:
                    break  # the last runs were skipped
                if not running and any(not s.parent or recorder.ended(s.parent) for s in pending.values()):
                    continue  # children of a run that just ended were skipped: look again
                if not running:
                    missing = sorted({s.parent for s in pending.values()})
                    raise ValueError(f"runs {sorted(pending)} wait for parents {missing} that are not in the protocol")
                finished, _ = wait(running, timeout=0.5, return_when=FIRST_COMPLETED)
                _drain(channel, recorder, ended)
                for future in finished:
                    name = running.pop(future)
                    try:
                        outcome = future.result()
                    except BaseException:
                        for other in running:
                            other.cancel()
                        raise
                    while name not in ended:
                        _drain(channel, recorder, ended, block=True)
                    recorder.finish(name, outcome)
                    trained.append(name)
    finally:
        channel.close()
    return trained


def _drain(channel, recorder: _Recorder, ended: set[str], *, block: bool = False) -> None:
    """Write the queued rows; with ``block``, wait (up to a minute) for at least one message."""
    while True:
        try:
            name, row = channel.get(timeout=60) if block else channel.get_nowait()
        except queue_module.Empty:
            if block:
                raise RuntimeError("a finished worker's rows did not arrive within a minute") from None
            return
        block = False
        if row is None:
            ended.add(name)
        else:
            recorder.epoch(name, row)


def _dependency_order(pending: dict[str, RunSpec], recorder: _Recorder) -> list[RunSpec]:
    ordered, placed = [], set()
    remaining = dict(pending)
    while remaining:
        ready = [s for s in remaining.values() if not s.parent or s.parent in placed or recorder.ended(s.parent)]
        if not ready:
            raise ValueError(f"runs {sorted(remaining)} wait for parents that are not in the protocol")
        for spec in ready:
            ordered.append(spec)
            placed.add(spec.name)
            del remaining[spec.name]
    return ordered


@contextlib.contextmanager
def _threads(count: int | None) -> Iterator[None]:
    """Torch's intra-op threads set to ``count`` (``None``: unchanged) for the block, then restored."""
    before = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def default_threads(jobs: int) -> int:
    """Torch threads per worker: the cores shared out among the jobs, at least one."""
    return max(1, (os.cpu_count() or 1) // jobs)
