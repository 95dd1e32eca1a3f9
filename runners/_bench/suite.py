"""``python -m runners.bench all``: issue 15's performance table, each ratio next to its anchor.

Every ratio is measured in this one process with one torch thread (on a loaded 2-core machine two
threads were 2-5x slower than one and misleading), the two sides of each ratio interleaved and the
best of ``--repeats`` kept; the load average before and after is recorded with the table, because a
ratio measured on a busy machine is only as good as that load. ``--quick`` runs every row at tiny
sizes (seconds: for tests, timings meaningless); :func:`render_markdown` turns a saved table into
the README's performance section (``python -m runners.bench readme``), so that it is never typed by
hand.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import re
import time
from pathlib import Path

import torch

from embeddings import MemoryBudgetError
from runners._bench import elcn, hessian, interpolation, lanczos_memory
from runners._bench.timing import load_average

# Flags of each benchmark in a full run and in --quick (tiny sizes, for tests).
FULL = {
    "elcn": ["--channels", "64", "--batch-size", "100"],
    "interp": ["--channels", "64", "--n-train", "2000", "--n-test", "500", "--points", "11"],
    "hessian": ["--channels", "64"],
}
QUICK = {
    "elcn": ["--channels", "4", "--batch-size", "8"],
    "interp": ["--channels", "4", "--n-train", "100", "--n-test", "50", "--batch-size", "50", "--points", "3"],
    "hessian": ["--channels", "4", "--n-train", "100", "--batch-size", "50", "--epochs", "1", "--k", "2"],
}
MODULES = {"elcn": elcn, "interp": interpolation, "hessian": hessian}

# No code path stacks seeds with vmap: seeds run one after another or in worker processes.
SEEDS_VMAP_NOTE = ("seeds are never stacked with vmap on the CPU: they run one by one or in worker processes "
                   "(runners._engine.pool); issue 15 measured vmap over 4 seeds at 0.68-0.96x a loop there")
PENDING = "not measured: runners._bench.hessian reported no such row"
START, END = "<!-- bench-table:start -->", "<!-- bench-table:end -->"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repeat: checks that every row runs (seconds)")
    parser.add_argument("--repeats", type=int, default=5, help="best of this many interleaved timings per ratio (default 5)")
    parser.add_argument("--with-lanczos-100m", action="store_true",
                        help="also run top-5 Lanczos on a >= 100M-parameter eFCN and record its peak memory (minutes)")
    parser.add_argument("--save", type=Path, default=None, help="also write the JSON table to this file (e.g. docs/bench.json)")


def _row(ratio: str, what: str, value: float | None, anchor: str, target: str, met: bool | None, note: str = "") -> dict:
    if value is not None and not math.isfinite(value):  # e.g. PyHessian never reached the target error
        value, met, note = None, None, note or "not reached"
    return {"ratio": ratio, "what": what, "value": value, "anchor": anchor, "target": target, "met": met, "note": note}


def _at_most(value: float | None, bound: float) -> bool | None:
    return None if value is None or not math.isfinite(value) else value <= bound


def _measure(name: str, options: list[str], repeats: int) -> dict:
    parser = argparse.ArgumentParser()
    MODULES[name].add_arguments(parser)
    return MODULES[name].run(parser.parse_args([*options, "--repeats", str(repeats)]))


def _table(details: dict) -> list[dict]:
    e, i, h = details["elcn"], details["interp"], details["hessian"]
    rows = []
    for space, prefix, net in (("cnn", "", "VanillaCNN-1D"), ("efcn", "efcn.", "its eFCN")):
        hvp, pyhessian_hvp = h.get(f"{prefix}hvp_over_grad"), h.get(f"{prefix}pyhessian_hvp_over_grad")
        pending = "" if hvp is not None else PENDING
        params = h.get(f"{prefix}params")
        net += "" if params is None else f" ({params:,} parameters)"
        anchor = "PyHessian's HVP" + ("" if pyhessian_hvp is None else f": {pyhessian_hvp:.3g}x a gradient")
        rows.append(_row(f"hvp_over_grad.{space}", f"one full-data HVP / one gradient, {net}", hvp, anchor, "<= 2.2",
                         _at_most(hvp, 2.2), pending))
        blocked = h.get(f"{prefix}hvp_in_blocks_of_8_over_grad")
        per_vector = blocked / hvp if blocked is not None and hvp else None
        rows.append(_row(f"blocked_over_single.{space}", f"HVP per vector in blocks of 8 / a single HVP, {net}", per_vector,
                         "single products (1)", "<= 1", _at_most(per_vector, 1.0), pending))
    for model in ("vanilla1d", "vanilla2d"):
        value = e.get(f"{model}.elcn_over_cnn")
        rows.append(_row(f"elcn_over_cnn.{model}", f"eLCN forward+backward / its CNN's, {model}, batch {e['batch_size']}", value,
                         f"the CNN: {e[f'{model}.cnn_step_s'] * 1e3:.3g} ms a step", "<= 2", _at_most(value, 2.0)))
    lanczos = details.get("lanczos100m", {})
    peak = lanczos.get("peak_GiB")
    if peak is None:
        note = lanczos.get("refused", "run with --with-lanczos-100m")
    else:  # a peak counts only for a run that found the eigenvalues
        state = "converged" if lanczos["converged"] else "NOT converged"
        note = f"{lanczos['max_basis_vectors']} stored vectors, {lanczos['products']} products, {state}"
    met = None if peak is None else peak < 8 and lanczos["converged"]
    rows.append(_row("lanczos_top5_peak_GiB.100M", "peak memory of top-5 Lanczos on a >= 100M-parameter eFCN (GiB)", peak,
                     "unrestricted Lanczos: 50.7 GB (100 stored vectors)", "< 8, converged", met, note))
    restarted = h.get("lanczos_restart.restarted_over_full_products")
    rows.append(_row("restarted_over_full.lanczos", "products of thick-restart top-k Lanczos / unrestricted Lanczos's, VanillaCNN-1D",
                     restarted, "unrestricted Lanczos (1)", "<= 1.5", _at_most(restarted, 1.5), "" if restarted is not None else PENDING))
    for space in ("cnn", "efcn"):
        value = i.get(f"{space}.interp_over_naive")
        rows.append(_row(f"interp_over_naive.{space}", f"linear interpolate / naive functional_call loop, {space}, {i['points']} points",
                         value, f"the naive loop: {i[f'{space}.naive_s']:.3g} s", "<= 1.05", _at_most(value, 1.05)))
    k = max(int(match[1]) for match in map(re.compile(r"top(\d+)\.speedup_at_target$").match, h) if match)
    speedup = h[f"top{k}.speedup_at_target"]
    rows.append(_row(f"pyhessian_over_ours.top{k}", f"PyHessian's time / ours for the top-{k} eigenvalues at the same error", speedup,
                     "PyHessian (power iteration with deflation)", "> 1", speedup > 1))
    return rows


def _lanczos_100m() -> dict:
    """Top-5 Lanczos on the AlexNet eFCN (:mod:`.lanczos_memory`); a refusal for memory is the row's note, not the run's end."""
    try:
        return lanczos_memory.measure()
    except (MemoryBudgetError, SystemExit) as error:
        return {"refused": str(error)}


def run_all(args: argparse.Namespace) -> dict:
    """Measure every ratio of the table with one thread; returns the table, the machine and the raw rows."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    before = load_average()
    started = datetime.datetime.now(datetime.timezone.utc)
    sizes = QUICK if args.quick else FULL
    repeats = 1 if args.quick else args.repeats
    details = {}
    try:
        for name in MODULES:
            start = time.perf_counter()
            details[name] = _measure(name, sizes[name], repeats) | {"benchmark_s": time.perf_counter() - start}
        if args.with_lanczos_100m:
            details["lanczos100m"] = _lanczos_100m()
    finally:
        torch.set_num_threads(threads)
    report = {
        "table": _table(details),
        "machine": {
            "threads": 1, "repeats": repeats, "quick": bool(args.quick), "cpu_count": os.cpu_count(),
            "load_average_before": before, "load_average_after": load_average(),
            "processor": platform.processor() or platform.machine(), "torch": torch.__version__,
            "started": started.isoformat(timespec="seconds"),
            "seconds": round((datetime.datetime.now(datetime.timezone.utc) - started).total_seconds(), 1),
        },
        "notes": {"seeds_vmap": SEEDS_VMAP_NOTE},
        "details": details,
    }
    if args.save is not None:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        args.save.write_text(json.dumps(report, indent=2) + "\n")
    return report


def render_markdown(report: dict) -> str:
    """The README's performance section: the table of a ``bench all --json`` report, with its conditions."""
    m = report["machine"]
    lines = [
        f"Measured by `python -m runners.bench all` ({m['started']}, {m['seconds']:.0f} s): {m['cpu_count']} cores, "
        f"{m['threads']} torch thread, each ratio's two sides interleaved, best of {m['repeats']}; load average "
        f"{m['load_average_before'][0]:g} before, {m['load_average_after'][0]:g} after (1 min).",
        "",
        "| ratio | measured | anchor | target | met |",
        "|---|---|---|---|---|",
    ]
    for row in report["table"]:
        met = {True: "yes", False: "**no**", None: "—"}[row["met"]]
        value = f"{row['value']:.3g}" if row["value"] is not None else f"— ({row['note']})"
        lines.append(f"| {row['what']} | {value} | {row['anchor']} | {row['target']} | {met} |")
    lines += ["", f"Seeds: {report['notes']['seeds_vmap']}."]
    return "\n".join(lines)


def rewrite_readme(readme: Path, report: dict) -> None:
    """Replace the text between the README's bench-table markers by :func:`render_markdown` of ``report``."""
    text = readme.read_text()
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), flags=re.DOTALL)
    if not pattern.search(text):
        raise ValueError(f"{readme} has no {START} ... {END} markers; add them where the performance table belongs")
    readme.write_text(pattern.sub(lambda _: f"{START}\n{render_markdown(report)}\n{END}", text, count=1))
