"""The relax protocol's numbers over seeds: the result ``aggregates`` beside ``runs``.

Runs are grouped by their attributes ``protocol_run`` and ``seed`` (written by
:func:`runners._engine.protocol.seeded`; a file from before seeds: the run's name and the result's
``seed``), never by parsing names. For every protocol run, :func:`aggregate` summarises each metric of
:data:`METRICS` over its seeds with :func:`results.summarize`, and every run but the CNN gets the
paired ``gain_vs_final_cnn`` (:func:`results.paired`): per seed, its final test accuracy minus the
same seed's CNN's final test accuracy (:func:`cnn_final_test_acc`), then summarised -- the pairing
removes the seed-to-seed variance both runs share. ``best_test_acc`` is chosen on the test set: it is
kept under that name for the paper's Fig. 3 and never used for a verdict.

Only finished runs (``status == "done"``) are summarised: a diverged or skipped run has no accuracy
to average, and the aggregates' ``excluded_runs`` attribute (JSON ``{name: why}``) names them.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Mapping

import h5py
import numpy as np

from results import Summary, paired, read_curve, run_key, summarize, unfinished_runs, write_attrs
from runners._engine.controls import cnn_references

__all__ = ["METRICS", "GAIN", "seed_groups", "cnn_final_test_acc", "aggregate", "write_aggregates", "aggregate_table"]

METRICS = ("final_test_acc", "final_train_loss", "final_delta", "local_only_acc", "offlocal_only_acc", "best_test_acc")
"""Per-run attributes summarised over seeds (``best_test_acc``: chosen on the test set, never a verdict)."""

GAIN = "gain_vs_final_cnn"
"""A run's final test accuracy minus its seed's final CNN's, paired by seed (fraction, not points)."""

CNN = "cnn"


def seed_groups(runs: h5py.Group) -> dict[str, dict[int, h5py.Group]]:
    """The run groups of ``runs`` by protocol run, then by seed (sorted).

    A group without ``protocol_run`` / ``seed`` attributes (a file written before seeds) counts as
    protocol run = its name, seed = the ``seed`` of ``runs`` (-1 when that is missing too). Runs not
    ``done`` (running, diverged, skipped) are left out.
    """
    default_seed = int(runs.attrs.get("seed", -1))
    grouped: dict[str, dict[int, h5py.Group]] = defaultdict(dict)
    for name, group in runs.items():
        if not isinstance(group, h5py.Group) or group.attrs.get("status") != "done":
            continue
        protocol_run, seed = run_key(name, group.attrs, default_seed)
        grouped[protocol_run][seed] = group
    return {run: dict(sorted(seeds.items())) for run, seeds in sorted(grouped.items())}


def cnn_final_test_acc(cnn: h5py.Group) -> float:
    """The CNN's "final" test accuracy: ``reference_test_acc`` of :func:`~runners._engine.controls.cnn_references`
    (its history at ``reference_epoch``) when the group sets a reference epoch, else the history's last row.

    A CNN trained longer than the protocol's budget (a matched control) sets ``reference_epoch`` to the
    protocol's end, so the final-CNN reference stays the CNN at the end of its budget.
    """
    history = read_curve(cnn["history"])
    if "reference_epoch" not in cnn.attrs:
        return float(history["test_acc"][-1]) if len(history["test_acc"]) else float(cnn.attrs.get("final_test_acc", math.nan))
    epoch = int(cnn.attrs["reference_epoch"])
    accuracy = cnn_references(history, epoch)["reference_test_acc"]
    if math.isnan(accuracy):
        raise ValueError(f"the CNN run {cnn.name} has reference_epoch {epoch} but no history row at that epoch; "
                         "retrain it (runners.relax --resume) or drop the attribute")
    return accuracy


def aggregate(runs: h5py.Group) -> dict[str, dict[str, Summary]]:
    """Every protocol run's :data:`METRICS` over seeds, and its paired :data:`GAIN` (not the CNN's own).

    Returns:
        ``{protocol_run: {metric: Summary}}``; a gain is summarised over the seeds that have both the
        run and a CNN.
    """
    grouped = seed_groups(runs)
    cnn = {seed: cnn_final_test_acc(group) for seed, group in grouped.get(CNN, {}).items()}
    out: dict[str, dict[str, Summary]] = {}
    for run, seeds in grouped.items():
        out[run] = {metric: summarize([float(g.attrs.get(metric, math.nan)) for g in seeds.values()]) for metric in METRICS}
        if run != CNN and cnn:
            both = [seed for seed in seeds if seed in cnn]
            out[run][GAIN] = paired([float(seeds[s].attrs.get("final_test_acc", math.nan)) for s in both], [cnn[s] for s in both])
    return out


def write_aggregates(runs: h5py.Group, target: h5py.Group) -> dict[str, dict[str, Summary]]:
    """Write :func:`aggregate` of ``runs`` into ``target``: one group per protocol run, ``Summary.as_attrs`` per metric.

    Each group also holds ``seeds`` (the seeds summarised) and ``runs`` (their group names, JSON);
    ``target`` itself ``excluded_runs``, the :func:`results.unfinished_runs` left out.
    Groups already in ``target`` (a resumed result) are replaced: the aggregates are recomputed whole.
    """
    summaries = aggregate(runs)
    grouped = seed_groups(runs)
    for name in list(target):
        del target[name]
    write_attrs(target, {"excluded_runs": json.dumps(unfinished_runs(runs), sort_keys=True)})
    for run, metrics in summaries.items():
        group = target.create_group(run)
        attrs: dict = {"seeds": np.array(list(grouped[run]), dtype="i8"),
                       "runs": json.dumps([g.name.rsplit("/", 1)[-1] for g in grouped[run].values()]),
                       "best_test_acc_note": "best (chosen on test): never used for a verdict"}
        for metric, summary in metrics.items():
            attrs.update(summary.as_attrs(metric))
        write_attrs(group, attrs)
    return summaries


def aggregate_table(summaries: Mapping[str, Mapping[str, Summary]]) -> str:
    """One line per protocol run: mean ± CI half-width (n) of the final test accuracy, the gain vs the final CNN, delta."""
    columns = (("final_test_acc", "final test acc"), (GAIN, "gain vs final cnn"), ("final_delta", "delta"),
               ("best_test_acc", "best (on test)"))
    lines = [f"{'protocol run':<20}" + "".join(f"{title:>24}" for _, title in columns)]
    order = sorted(summaries, key=lambda n: (n not in (CNN, "fcn"), n.count("_"), len(n), n))
    for run in order:
        cells = []
        for metric, _ in columns:
            s = summaries[run].get(metric)
            if s is None or s.n == 0:
                cells.append(f"{'-':>24}")
            else:
                half = "  n/a" if math.isnan(s.half_width) else f"{s.half_width:.4f}"
                cells.append(f"{f'{s.mean:.4f} ± {half} ({s.n})':>24}")
        lines.append(f"{run:<20}" + "".join(cells))
    return "\n".join(lines)
