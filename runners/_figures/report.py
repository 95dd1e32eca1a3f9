"""``report.md``: the claims table first, then every figure of a reproduction with the numbers behind it.

Everything is read from the HDF5 file. With several seeds every number is the mean over seeds with its
95% CI and n (:mod:`results.stats`); with one seed, the value itself. Accuracies chosen by looking at the
test set are labelled "best (chosen on test)" and never enter a verdict (:mod:`runners._figures.claims`).
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import h5py
import numpy as np

from results import summarize
from runners._figures.claims import check_claims, claims_markdown
from runners._figures.landscape_readers import interpolation_peaks, sharpness_runs
from runners._figures.readers import (MissingData, open_results, best_test_acc, expandnets_runs, final_cnn_acc, gain_vs_final_cnn,
                                      gain_vs_matched_cnn, history, loss_at_embedding, provenance, runs, excluded_runs)
from runners._figures.seed_readers import hierarchical_vs_single, protocol_attrs, seed_runs, switch_protocols


def _cell(values: Iterable[float], scale: float = 100.0, fmt: str = ".1f") -> str:
    """One seed: the value; several: ``mean [ci_low, ci_high]``; none: ``-`` (values in fractions times ``scale``)."""
    s = summarize([scale * v for v in values])
    if s.n == 0:
        return "-"
    if s.n == 1:
        return f"{s.mean:{fmt}}"
    return f"{s.mean:{fmt}} [{s.ci_low:{fmt}}, {s.ci_high:{fmt}}]"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows), ""]


def _seeds_line(n: int) -> str:
    return ("One seed: values without confidence intervals." if n == 1 else
            f"{n} seeds: mean [95% CI] over seeds (Student t; gains paired by seed).")


def _relax_section(store: h5py.File) -> list[str]:
    grouped = seed_runs(store)
    cnn = protocol_attrs(store, grouped, "cnn")
    fcn = protocol_attrs(store, grouped, "fcn") if "fcn" in grouped else {}
    lines = ["## Fig. 3-5: relaxing the CNN at t_w", "", _seeds_line(len(cnn)), ""]
    best_fcn = [best_test_acc(store, name) for name in grouped.get("fcn", {}).values()]
    lines += [f"CNN final test accuracy {_cell(final_cnn_acc(a) for a in cnn.values())}%; vanilla FCN of the same size: final "
              f"{_cell(a.get('final_test_acc', math.nan) for a in fcn.values())}%, best (chosen on test) {_cell(best_fcn)}%, "
              f"δ {_cell((a.get('final_delta', math.nan) for a in fcn.values()), 1.0, '.3g')}.", ""]
    if any("near_zero_loss_epoch" in a for a in cnn.values()):
        threshold = next(a.get("near_zero_loss_threshold", math.nan) for a in cnn.values())
        lines += [f"CNN trained until its train loss is near zero (≤ {threshold:g}, the poster's protocol): first at epoch "
                  f"{_cell((a.get('near_zero_loss_epoch', math.nan) for a in cnn.values()), 1.0, '.0f')}, test accuracy there "
                  f"{_cell(a.get('near_zero_loss_test_acc', math.nan) for a in cnn.values())}% (- : not reached).", ""]
    try:
        elcn = dict(switch_protocols(store, grouped, "elcn"))
    except MissingData:  # eFCN-only sweeps (--space efcn) leave the eLCN column empty
        elcn = {}
    histories = {s: history(store, name) for s, name in grouped["cnn"].items()}
    rows = []
    for t_w, protocol in switch_protocols(store, grouped):
        runs = protocol_attrs(store, grouped, protocol)
        elcn_runs = protocol_attrs(store, grouped, elcn[t_w]).values() if t_w in elcn else []
        rows.append([str(t_w), _cell(a["final_test_acc"] for a in runs.values()),
                     _cell((gain_vs_final_cnn(a, cnn[s]) for s, a in runs.items() if s in cnn), fmt="+.1f"),
                     _cell((a.get("final_delta", math.nan) for a in runs.values()), 1.0, ".3g"),
                     _cell((loss_at_embedding(store, grouped[protocol][s]) for s in runs), 1.0, ".3g"),
                     _cell(a.get("local_only_acc", math.nan) for a in runs.values()),
                     _cell(a.get("offlocal_only_acc", math.nan) for a in runs.values()),
                     _cell(a["final_test_acc"] for a in elcn_runs),
                     _cell((gain_vs_matched_cnn(a, histories[s]) for s, a in runs.items() if s in histories), fmt="+.1f"),
                     str(len(runs))])
    lines += _table(["t_w", "eFCN test acc (%)", "gain vs final CNN (points)", "final δ", "loss at embedding",
                     "local only (%)", "off-local only (%)", "eLCN test acc (%)", "gain vs matched CNN at t_w + E (points)", "n"], rows)
    try:
        cells = hierarchical_vs_single(store, equal_budget=True)
    except MissingData:
        return lines
    lines += ["### Hierarchical CNN -> eLCN(tw1) -> eFCN(tw2)", ""]
    rows = []
    for cell in cells:
        runs = protocol_attrs(store, grouped, f"efcn_tw1_{cell.tw1}_tw2_{cell.tw2}")
        rows.append([str(cell.tw1), str(cell.tw2), _cell(a["final_test_acc"] for a in runs.values()),
                     _cell((gain_vs_final_cnn(a, cnn[s]) for s, a in runs.items() if s in cnn), fmt="+.1f"),
                     _cell(cell.per_seed.values(), fmt="+.1f") + f" (vs {cell.reference})", str(len(runs))])
    return lines + _table(["tw1", "tw2", "test acc (%)", "gain vs final CNN (points)",
                           "minus the equal-budget single relaxation (points)", "n"], rows)


def _interpolation_section(store: h5py.File) -> list[str]:
    groups: dict[tuple[str, str], list] = defaultdict(list)
    for peak in interpolation_peaks(store):
        groups[(str(peak.t_w if peak.t_w is not None else peak.name), peak.method)].append(peak)
    rows = [[key, method, _cell((p.alpha for p in peaks), 1.0, ".2f"), _cell(p.peak_acc for p in peaks),
             _cell((p.gain for p in peaks), fmt="+.1f"),
             _cell((p.barrier if p.barrier is not None else math.nan for p in peaks), 1.0, ".3g"),
             str(len(peaks))] for (key, method), peaks in groups.items()]
    return ["## Fig. 6: interpolation CNN (α=0) -> eFCN (α=1)", "",
            "Peaks are chosen on the test set: they describe the figure and enter no verdict (the claims use α = 0.5).", "",
            *_table(["t_w", "method", "α of peak test acc (chosen on test)", "peak test acc (%) (chosen on test)",
                     "gain over better endpoint (points) (chosen on test)", "train-loss barrier", "n"], rows)]


def _basin_cell(width: float, std: float, censored: float) -> str:
    if np.isfinite(censored) and censored > 0:
        return f"≥ {width:.3g} (cap hit on {100 * censored:.0f}% of rays)"
    return f"{width:.3g} ± {std:.2g}"


def _sharpness_section(store: h5py.File) -> list[str]:
    header = ["run", "epoch", "final", "λ₁ (own coordinates)", "λ₁ (eFCN coordinates)", "trace ± se", "basin width ± std",
              "train loss"]
    rows = []
    for name, run in sharpness_runs(store).items():
        curve, own, efcn = run.curve, run.top_eig("own"), run.top_eig("efcn")
        censored = run.measure("basin_censored")
        for i in range(len(curve["epoch"])):
            rows.append([name, f"{curve['epoch'][i]:.0f}", "yes" if curve["final"][i] else "", f"{own[i]:.4g}",
                         "-" if np.isnan(efcn[i]) else f"{efcn[i]:.4g}", f"{curve['trace'][i]:.4g} ± {curve['trace_se'][i]:.2g}",
                         _basin_cell(curve["basin_width"][i], curve["basin_width_std"][i], censored[i]), f"{curve['train_loss'][i]:.4g}"])
    return ["## Sharpness and basin width", "", "One row per probed checkpoint (every seed's run is its own row).", "",
            *_table(header, rows)]


def _expandnets_section(store: h5py.File) -> list[str]:
    groups = expandnets_runs(store)
    compact = {r.attrs.get("seed"): r.attrs.get("compressed_test_acc", r.attrs.get("final_test_acc", math.nan))
               for r in groups.get("compact", [])}
    rows = []
    for label, seeds in groups.items():
        ours = {r.attrs.get("seed"): r.attrs.get("compressed_test_acc", math.nan) for r in seeds}
        rows.append([label, _cell(r.attrs.get("final_test_acc", math.nan) for r in seeds), _cell(ours.values()),
                     "-" if label == "compact" else _cell((ours[k] - compact[k] for k in ours if k in compact), fmt="+.1f"),
                     str(len(seeds))])
    return ["## ExpandNets: compact network against its linear expansions", "",
            "Compressed: the expanded network contracted back to the compact one; differences paired by seed.", "",
            *_table(["expansion", "final test acc (%)", "compressed test acc (%)", "compressed minus compact (points)", "n"], rows)]


def claims_section(store: h5py.File) -> list[str]:
    """The claims table with its verdict rule, as the report opens with it."""
    return ["## Claims, checked", "", claims_markdown(check_claims(store))]


def _data_sizes(store: h5py.File) -> list[str]:
    """The training and test set sizes the accuracies rest on (runs record them), as one report line."""
    sized = [a for a in runs(store).values() if "num_test" in a] if "runs" in store else []
    if not sized:
        return []
    train, test = int(sized[0]["num_train"]), int(sized[0]["num_test"])
    return [f"- {train} training and {test} test examples: one test example is {100 / test:.3g} points of accuracy"]


def _excluded_line(store: h5py.File) -> list[str]:
    """The runs every section leaves out, diverged or skipped (readers use finished runs only), named once."""
    excluded = excluded_runs(store)
    return [f"- left out of every number and figure (no result): {'; '.join(f'{n} {why}' for n, why in sorted(excluded.items()))}"] if excluded else []


def write_report(results: str | Path, path: str | Path, written: dict, skipped: dict[str, str], *, seconds: float) -> Path:
    """Write ``report.md`` next to the figures: the claims table first; sections whose data are missing say what produces them."""
    path = Path(path)
    with open_results(results) as store:
        attrs, config = provenance(store)
        lines = ["# Reproduction of d'Ascoli et al. (2019), 'Finding the needle in the haystack with convolutions'", "",
                 *claims_section(store), "## Provenance", "",
                 f"- command: `{attrs.get('command', '?')}`", f"- data: {config.get('data', '?')}, architecture {config.get('arch') or 'default'}, git commit {attrs.get('git_commit', '?')}, "
                 f"torch {attrs.get('torch', '?')}, created {attrs.get('created_utc', '?')}", *_data_sizes(store),
                 *_excluded_line(store),
                 f"- wall time: {seconds:.0f} s", ""]
        for section in (_relax_section, _interpolation_section, _sharpness_section, _expandnets_section):
            try:
                lines += section(store)
            except MissingData as missing:
                lines += [f"_{section.__name__.strip('_').replace('_section', '')}: {missing}_", ""]
    lines += ["## Figures", ""]
    for name, files in written.items():
        png = next(f for f in files if str(f).endswith(".png"))
        lines += [f"### {name}", "", f"![{name}]({os.path.relpath(png, path.parent)})", ""]
    for name, why in skipped.items():
        lines.append(f"- {name} skipped: {why}")
    path.write_text("\n".join(lines) + "\n")
    return path
