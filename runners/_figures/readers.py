"""Every read of a result file, and every quantity derived from one, defined once.

Figures and the report call these functions and draw or print what they return; none of them opens a
group of the file itself. A reader whose data are absent raises :class:`MissingData`, whose message
names the command that writes them.

Every file is opened with :func:`open_results`, the one guard against damaged or crafted files: it
checks the file's metadata before any figure reads it (``results.open_checked``), every dataset is
read with ``results.read_dataset`` (checksums verified, sizes bounded by what the file stores), and
whatever a damaged file makes a reader raise inside the block (malformed JSON attributes, nesting
deep enough for a RecursionError, attributes of the wrong type, missing keys, unreadable objects)
becomes one :class:`DamagedFile` line naming the file.

The readers of the landscape probes (``runners.interpolate``'s paths, ``runners.sharpness``' probed runs,
gain against sharpness) are in :mod:`.landscape_readers`, on the same guard.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import h5py
import numpy as np

from results import DamagedStore, open_checked, read_attrs, read_curve, read_dataset, run_key, unfinished_runs

RELAX = "python -m runners.relax --out DIR (or runners.reproduce)"
WEIGHTS = "python -m runners.weights --run-dir DIR (runners.reproduce runs it)"
INTERPOLATE = "python -m runners.interpolate --ckpt-a CNN.pt --ckpt-b EFCN.pt --out R.h5 (or runners.reproduce)"
SHARPNESS = "python -m runners.sharpness --run-dir DIR --out R.h5 (or runners.reproduce)"
EXPANDNETS = "python -m runners.expandnets --out DIR"
INTERPOLATION_METHODS = ("linear", "string", "output")
EXPANSION_ORDER = ("compact", "fc", "cl", "ck", "cl+fc", "ck+fc")

Curve = dict[str, np.ndarray]


class MissingData(LookupError):
    """What a figure needs is not in the file; the message names the command that writes it."""

    def __init__(self, what: str, command: str) -> None:
        super().__init__(f"needs {what}; produce it with {command}")


class DamagedFile(ValueError):
    """A result file that cannot be read as this toolkit wrote it: damaged or crafted (one line naming it)."""


@contextlib.contextmanager
def open_results(path: str | os.PathLike) -> Iterator[h5py.File]:
    """The result file ``path``, read-only, for the readers of this module; damage of any kind is one :class:`DamagedFile`.

    Raises:
        DamagedFile: the file is missing, locked by a writer, damaged (its metadata), or a reader in the
            block failed on its contents (malformed or wrongly typed attributes, missing members, a
            dataset failing its checksum or claiming more rows than the file stores).
    """
    try:
        store = open_checked(path, "r")
    except DamagedStore as err:
        raise DamagedFile(str(err)) from None
    except OSError as err:
        raise DamagedFile(f"cannot read {path} as HDF5 ({str(err).splitlines()[0] if str(err) else type(err).__name__}); "
                          "check the path, or wait for the command writing it to end") from None
    try:
        yield store
    except (OSError, RuntimeError, KeyError, TypeError, ValueError, RecursionError, AttributeError, IndexError) as err:
        if isinstance(err, DamagedFile):
            raise
        text = str(err).splitlines()[0][:200] if str(err) else ""
        raise DamagedFile(f"{path} holds data this toolkit cannot read ({type(err).__name__}: {text}); it is damaged or was "
                          "not written by these runners: restore it (python -m runners.repair FILE) or re-create it") from None
    finally:
        store.close()


# --- relax runs -------------------------------------------------------------------------------------


def runs(store: h5py.File) -> dict[str, dict[str, Any]]:
    """Every finished run's attributes, by run name: diverged and skipped runs have no result (:func:`excluded_runs`)."""
    if "runs" not in store:
        raise MissingData("/runs (training histories)", RELAX)
    excluded = excluded_runs(store)
    return {name: read_attrs(group) for name, group in store["runs"].items() if name not in excluded}


def excluded_runs(store: h5py.File) -> dict[str, str]:
    """``{name: why}`` of the runs left out of every figure and table: diverged, or skipped for a diverged parent."""
    return unfinished_runs(store["runs"]) if "runs" in store else {}


def require_run(all_runs: Mapping[str, dict], name: str) -> dict[str, Any]:
    """The attributes of run ``name`` of :func:`runs`, or :class:`MissingData` naming the relax command."""
    if name not in all_runs:
        raise MissingData(f"the run /runs/{name}", RELAX)
    return all_runs[name]


def history(store: h5py.File, name: str) -> Curve:
    """The per-epoch history of run ``name`` (``epoch``, ``train_loss``, ..., ``test_acc``, ``delta``)."""
    return read_curve(store["runs"][name]["history"])


def switch_runs(store: h5py.File, space: str = "efcn") -> list[tuple[int, str]]:
    """(t_w, run name) of the runs embedded straight from the CNN into ``space``, by t_w."""
    found = sorted((a["t_w"], n) for n, a in runs(store).items() if a.get("space") == space and "t_w" in a and "tw1" not in a)
    if not found:
        raise MissingData(f"{space} runs switched from the CNN", RELAX)
    return found


def best_test_acc(store: h5py.File, name: str) -> float:
    """The best test accuracy run ``name`` reached at any epoch (the paper's brown FCN line in Fig. 3)."""
    return float(np.nanmax(history(store, name)["test_acc"]))


def loss_at_embedding(store: h5py.File, name: str) -> float:
    """The train loss of run ``name`` at its first recorded epoch: just after embedding (Fig. 4, middle)."""
    return float(history(store, name)["train_loss"][0])


def final_cnn_acc(cnn: Mapping[str, Any]) -> float:
    """The final CNN's test accuracy: its history row at ``reference_epoch`` (``--epochs``).

    ``runners.relax --matched-controls`` trains the CNN past ``--epochs`` (to t_w + E), so its
    ``final_test_acc`` is the longer-trained CNN's; relax records the row at ``reference_epoch`` as
    ``reference_test_acc``. Files without it (no matched controls) give ``final_test_acc``; a CNN trained
    past its ``reference_epoch`` without ``reference_test_acc`` gives NaN rather than the wrong epoch.

    Example:
        >>> final_cnn_acc({"final_test_acc": 0.9, "epochs": 90, "reference_epoch": 60, "reference_test_acc": 0.85})
        0.85
        >>> final_cnn_acc({"final_test_acc": 0.9, "epochs": 60})
        0.9
        >>> final_cnn_acc({"final_test_acc": 0.9, "epochs": 90, "reference_epoch": 60})
        nan
    """
    if "reference_test_acc" in cnn:
        return float(cnn["reference_test_acc"])
    if cnn.get("reference_epoch", cnn.get("epochs")) != cnn.get("epochs"):
        return math.nan
    return float(cnn.get("final_test_acc", math.nan))


def gain_vs_final_cnn(run: Mapping[str, Any], cnn: Mapping[str, Any]) -> float:
    """The gain of relaxing over the final CNN: the run's final test accuracy minus :func:`final_cnn_acc` (same seed).

    Both are fractions in [0, 1] (multiply by 100 for points). The reference is the CNN trained to the
    end of its budget (``--epochs``), not the CNN at the switch time t_w: the paper's Fig. 3 asks whether
    an eFCN stemmed at t_w ends up better than the CNN would have (the red curve's end). The eFCN has then
    seen t_w + E epochs, the CNN ``--epochs``: :func:`gain_vs_matched_cnn` compares equal epochs.
    NaN when the CNN's accuracy is not recorded.

    Example:
        >>> round(gain_vs_final_cnn({"final_test_acc": 0.90}, {"final_test_acc": 0.85}), 6)
        0.05
        >>> cnn = {"final_test_acc": 0.88, "epochs": 90, "reference_epoch": 60, "reference_test_acc": 0.86}
        >>> round(gain_vs_final_cnn({"final_test_acc": 0.90}, cnn), 6)  # 0.90 - 0.86, not 0.90 - 0.88
        0.04
    """
    return run["final_test_acc"] - final_cnn_acc(cnn)


relax_gain = gain_vs_final_cnn  # the name report.py and earlier callers use


def epochs_seen(run: Mapping[str, Any]) -> int:
    """Epochs a run has trained since the CNN's initialisation: its switch time(s) plus its own epochs.

    Example:
        >>> epochs_seen({"t_w": 16, "epochs": 30}), epochs_seen({"tw1": 4, "tw2": 16, "epochs": 30}), epochs_seen({"epochs": 60})
        (46, 50, 60)
    """
    return int(run["epochs"]) + sum(int(run.get(key, 0)) for key in ("t_w", "tw1", "tw2"))


def cnn_accuracy_at(store_or_runs: h5py.File | h5py.Group, seed: int, epoch: int) -> float:
    """The test accuracy of seed ``seed``'s CNN at ``epoch``: its history row (NaN when it stopped earlier).

    Args:
        store_or_runs: a relax result file (its ``/runs`` is read) or the group holding the runs.
        seed: the CNN's ``seed`` attribute (runs without one: the relax configuration's seed).
        epoch: an epoch on the CNN's clock (0: at initialisation).

    Raises:
        MissingData: no CNN run of that seed (``protocol_run`` ``cnn``, or named ``cnn`` without one).
    """
    group = store_or_runs["runs"] if isinstance(store_or_runs, h5py.File) else store_or_runs
    default_seed = json.loads(group.attrs.get("config", "{}")).get("seed", 0)
    found = [run for name, run in group.items()
             if isinstance(run, h5py.Group) and run_key(name, run.attrs, default_seed) == ("cnn", seed)]
    if not found:
        raise MissingData(f"the CNN run of seed {seed} in {group.name}", RELAX)
    curve = read_curve(found[0]["history"])
    at = np.flatnonzero(curve["epoch"] == epoch)
    return float(curve["test_acc"][at[0]]) if at.size else math.nan


def gain_vs_matched_cnn(run: Mapping[str, Any], cnn_history: Mapping[str, np.ndarray]) -> float:
    """The gain of relaxing over the CNN of as many epochs (t_w + E, same seed), read off the CNN's history.

    The run's final test accuracy minus the CNN's test accuracy at :func:`epochs_seen`: the matched control
    of ``runners.relax --matched-controls``, an eFCN switched at t_w and trained E epochs against the CNN
    trained t_w + E epochs. NaN when the CNN's history stops earlier.

    Args:
        run: the relaxed run's attributes (``final_test_acc``, ``epochs``, ``t_w`` or ``tw1`` and ``tw2``).
        cnn_history: the CNN's history (``epoch``, ``test_acc``), e.g. :func:`history`.

    Example:
        >>> cnn = {"epoch": np.arange(7), "test_acc": np.array([.1, .5, .6, .7, .75, .8, .82])}
        >>> round(gain_vs_matched_cnn({"final_test_acc": 0.78, "t_w": 2, "epochs": 3}, cnn), 6)  # 0.78 - 0.80
        -0.02
        >>> gain_vs_matched_cnn({"final_test_acc": 0.78, "t_w": 5, "epochs": 3}, cnn)
        nan
    """
    at = np.flatnonzero(np.asarray(cnn_history["epoch"]) == epochs_seen(run))
    return run["final_test_acc"] - (float(cnn_history["test_acc"][at[0]]) if at.size else math.nan)


@dataclass(frozen=True)
class RelaxGains:
    """:func:`gain_vs_final_cnn` of every run switched from the CNN into one space, by t_w.

    Attributes:
        t_w: relax times (CNN epochs), ascending.
        gain: :func:`gain_vs_final_cnn` of the run relaxed at each t_w (fraction, not points).
        runs: the run names, aligned with ``t_w``.
    """

    t_w: np.ndarray
    gain: np.ndarray
    runs: tuple[str, ...]


def relax_gains(store: h5py.File, space: str = "efcn") -> RelaxGains:
    """:func:`gain_vs_final_cnn` of every run switched from the CNN into ``space`` (needs ``/runs/cnn``)."""
    all_runs = runs(store)
    cnn = require_run(all_runs, "cnn")
    found = switch_runs(store, space)
    return RelaxGains(t_w=np.array([t for t, _ in found]), gain=np.array([gain_vs_final_cnn(all_runs[n], cnn) for _, n in found]),
                      runs=tuple(n for _, n in found))


def provenance(store: h5py.File) -> tuple[dict[str, Any], dict[str, Any]]:
    """Who made the file and with what: its root attributes, and the relax result's decoded ``config``.

    The root holds the provenance of the file's creator (command, versions, commit, time; for a merged
    reproduction, the ``runners.reproduce`` command). The configuration (data set, architecture) is the
    relax result's, stored on ``/runs`` by the result writer; files written before it kept it at the root.
    """
    attrs = read_attrs(store)
    relax = read_attrs(store["runs"]) if "runs" in store else {}
    return attrs, json.loads(relax.get("config", attrs.get("config", "{}")))


# --- weights copied by runners.weights ----------------------------------------------------------------


@dataclass(frozen=True)
class WeightPanel:
    """One eFCN weight block of ``/weights/fig2`` or ``/weights/fig5``, at embedding and after training."""

    t_w: int
    epochs: int | None
    embedded: np.ndarray
    trained: np.ndarray


def filter_index(store: h5py.File) -> np.ndarray:
    """Fig. 1's matrix: the filter entry each eFCN weight holds (-1 off-local)."""
    if "weights/fig1" not in store:
        raise MissingData("/weights/fig1", WEIGHTS)
    return read_dataset(store["weights/fig1/filter_index"])


def weight_panels(store: h5py.File, figure: str) -> list[WeightPanel]:
    """The weight blocks of ``/weights/<figure>`` (``fig2`` or ``fig5``), by t_w."""
    if f"weights/{figure}" not in store or not len(store[f"weights/{figure}"]):
        raise MissingData(f"/weights/{figure}", WEIGHTS)
    panels = [WeightPanel(t_w=(a := read_attrs(g))["t_w"], epochs=a.get("epochs"), embedded=read_dataset(g["embedded"]), trained=read_dataset(g["trained"]))
              for g in store[f"weights/{figure}"].values()]
    return sorted(panels, key=lambda p: p.t_w)


# --- ExpandNets runs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpandRun:
    """One finished ExpandNets run: its history and, when recorded, final gradient cosines and 1-D surface."""

    history: Curve
    final_cosines: np.ndarray | None
    surface_1d: Curve | None
    attrs: dict[str, Any] = field(default_factory=dict)  # the run group's attributes (seed, compressed_test_acc, ...)


# Where ExpandNets runs live: ``/runs`` of expandnets.h5, or under ``/expandnets`` once merged into a reproduction.
EXPANDNETS_GROUPS = ("runs", "expandnets/runs", "expandnets")


def expandnets_group(store: h5py.File) -> str | None:
    """The first of :data:`EXPANDNETS_GROUPS` holding a run group with an ExpandNets ``mode`` attribute, else None."""
    for path in EXPANDNETS_GROUPS:
        if path in store and isinstance(store[path], h5py.Group):
            if any(isinstance(child, h5py.Group) and "mode" in child.attrs for child in store[path].values()):
                return path
    return None


def expandnets_runs(store: h5py.File, group: str | None = None) -> dict[str, list[ExpandRun]]:
    """The finished ExpandNets runs grouped by expansion (``mode``, `` (product L2)`` with that penalty), in paper order.

    Args:
        group: the HDF5 group holding the runs (``"runs"`` in expandnets.h5, ``"expandnets/runs"`` or
            ``"expandnets"`` in a merged file); default: the first of :data:`EXPANDNETS_GROUPS` that holds them.
    """
    groups: dict[str, list[ExpandRun]] = defaultdict(list)
    path = group or expandnets_group(store)
    for group in (store[path].values() if path and path in store else ()):
        attrs = read_attrs(group)
        if "mode" in attrs and attrs.get("status") == "done":
            label = attrs["mode"] + (" (product L2)" if attrs.get("l2") == "product" else "")
            groups[label].append(ExpandRun(history=read_curve(group["history"]),
                                           final_cosines=read_dataset(group["final_cosines"]["cosine"]) if "final_cosines" in group else None,
                                           surface_1d=read_curve(group["surface_1d"]) if "surface_1d" in group else None,
                                           attrs=attrs))
    if not groups:
        raise MissingData("ExpandNets runs (/runs/<mode>_seed<k>)", EXPANDNETS)

    def order(label: str) -> tuple[int, str]:
        mode = label.split()[0]
        return (EXPANSION_ORDER.index(mode) if mode in EXPANSION_ORDER else len(EXPANSION_ORDER), label)

    return {label: groups[label] for label in sorted(groups, key=order)}
