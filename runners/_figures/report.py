"""``report.md``: every figure of a reproduction with the numbers behind it, read from the HDF5 file."""

from __future__ import annotations

import math
import os
from pathlib import Path

import h5py

from runners._figures.readers import (MissingData, best_test_acc, hierarchical_runs, interpolation_peaks, loss_at_embedding,
                                      provenance, relax_gain, runs, sharpness_runs, switch_runs)


def _pct(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}"


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}g}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows), ""]


def _relax_section(store: h5py.File) -> list[str]:
    all_runs = runs(store)
    cnn, fcn = all_runs.get("cnn", {}), all_runs.get("fcn", {})
    lines = ["## Fig. 3-5: relaxing the CNN at t_w", ""]
    best_fcn = best_test_acc(store, "fcn") if "fcn" in all_runs else None
    lines += [f"CNN final test accuracy {_pct(cnn.get('final_test_acc'))}%; vanilla FCN of the same size: final "
              f"{_pct(fcn.get('final_test_acc'))}%, best {_pct(best_fcn)}%, δ {_num(fcn.get('final_delta'))}.", ""]
    elcn = {a["t_w"]: a for a in all_runs.values() if a.get("space") == "elcn" and "t_w" in a}
    rows = []
    for t_w, name in switch_runs(store):
        a = all_runs[name]
        rows.append([str(t_w), _pct(a["final_test_acc"]), f"{100 * relax_gain(a, cnn):+.1f}", _num(a.get("final_delta")),
                     _num(loss_at_embedding(store, name)), _pct(a.get("local_only_acc")), _pct(a.get("offlocal_only_acc")),
                     _pct(elcn.get(t_w, {}).get("final_test_acc"))])
    lines += _table(["t_w", "eFCN test acc (%)", "gain vs CNN (points)", "final δ", "loss at embedding",
                     "local only (%)", "off-local only (%)", "eLCN test acc (%)"], rows)
    grid = hierarchical_runs(all_runs)
    if grid:
        lines += ["### Hierarchical CNN -> eLCN(tw1) -> eFCN(tw2)", ""]
        lines += _table(["tw1", "tw2", "test acc (%)", "gain vs CNN (points)"],
                        [[str(a["tw1"]), str(a["tw2"]), _pct(a["final_test_acc"]), f"{100 * relax_gain(a, cnn):+.1f}"] for a in grid])
    return lines


def _interpolation_section(store: h5py.File) -> list[str]:
    rows = [[str(p.t_w if p.t_w is not None else p.name), p.method, f"{p.alpha:.2f}", _pct(p.peak_acc),
             f"{100 * p.gain:+.1f}", _num(p.barrier)] for p in interpolation_peaks(store)]
    return ["## Fig. 6: interpolation CNN (α=0) -> eFCN (α=1)", "",
            *_table(["t_w", "method", "α of peak test acc", "peak test acc (%)", "gain over better endpoint (points)",
                     "train-loss barrier"], rows)]


def _sharpness_section(store: h5py.File) -> list[str]:
    header = ["run", "epoch", "final", "λ₁", "trace ± se", "basin width ± std", "train loss"]
    rows = []
    for name, run in sharpness_runs(store).items():
        curve = run.curve
        for i in range(len(curve["epoch"])):
            rows.append([name, f"{curve['epoch'][i]:.0f}", "yes" if curve["final"][i] else "", f"{run.top_eigs[i, 0]:.4g}",
                         f"{curve['trace'][i]:.4g} ± {curve['trace_se'][i]:.2g}",
                         f"{curve['basin_width'][i]:.3g} ± {curve['basin_width_std'][i]:.2g}", f"{curve['train_loss'][i]:.4g}"])
    return ["## Sharpness and basin width", "", *_table(header, rows)]


def write_report(results: str | Path, path: str | Path, written: dict, skipped: dict[str, str], *, seconds: float) -> Path:
    """Write ``report.md`` next to the figures; sections whose data are missing say what produces them."""
    path = Path(path)
    with h5py.File(results, "r") as store:
        attrs, config = provenance(store)
        lines = ["# Reproduction of d'Ascoli et al. (2019), 'Finding the needle in the haystack with convolutions'", "",
                 f"- command: `{attrs.get('command', '?')}`", f"- data: {config.get('data', '?')}, architecture {config.get('arch') or 'default'}, git commit {attrs.get('git_commit', '?')}, "
                 f"torch {attrs.get('torch', '?')}, created {attrs.get('created_utc', '?')}", f"- wall time: {seconds:.0f} s", ""]
        for section in (_relax_section, _interpolation_section, _sharpness_section):
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
