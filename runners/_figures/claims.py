"""Every claim of the paper, its supplementary and its poster, with a verdict computed from the HDF5 file.

Each claim is a small function of the open file returning a :class:`~runners._figures.verdicts.Claim`: the
statistic that tests it, its value with a 95% confidence interval over seeds (:mod:`results.stats`), the
number of seeds and the verdict of the one rule applied to every claim (:data:`RULE`):

    A claim becomes a statistic S with a claimed region R (a half-line such as S > 0, or an interval for
    "similar"). S is estimated with its 95% CI over seeds: a paired difference per seed
    (`results.paired`, Student t), a mean over seeds (`results.summarize`) or a Spearman rank correlation
    over every (seed, t_w) point (`results.rank_correlation`, bootstrap). The verdict is **holds** when the
    CI lies entirely inside R, **fails** when it lies entirely outside R, **inconclusive** otherwise, and
    always with one seed (no seed-to-seed variance, no CI: "1 seed"); **not measured** when the file lacks
    the data (the row names the command that writes them). A claim about every t_w holds when every part
    holds and fails when one part fails; a claim about some t_w holds when one part holds and fails when
    every part fails (no multiple-comparison correction); the row shows the deciding part. A basin width
    whose search hit its cap is a lower bound: a difference bounded on one side only supports the verdict
    that side cannot overturn. Exact quantities (parameter counts) have no CI and are decided on their
    value. Accuracies chosen on the test set ("best") are never used: accuracies are final ones, and
    interpolation paths are compared at alpha = 0.5, fixed in advance. "Intermediate" t_w are those
    strictly between the smallest and the largest t_w of the sweep.

:func:`check_claims` runs every claim of :data:`CLAIMS`; :func:`claims_markdown` renders the table and the
rule (the report opens with it; ``python -m runners.figures --claims-md`` writes it for the README).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import replace

import h5py
import numpy as np

from runners._figures.landscape_readers import (InterpolationPath, Probed, figure_coordinates, gain_vs_sharpness, interpolation_paths,
                                                sharpness_runs)
from runners._figures.readers import INTERPOLATE, RELAX, SHARPNESS, MissingData, final_cnn_acc, provenance
from runners._figures.seed_readers import (hierarchical_vs_single, protocol_attrs, run_metric, seed_runs, switch_gain_stats,
                                           switch_protocols)
from runners._figures.verdicts import Claim, Part, Region, claim, correlation_part, mean_part, measured, paired_part

RULE = " ".join(__doc__.split("\n\n")[2].split())
"""The verdict rule, as the report prints it under the claims table."""

CHANCE_MARGIN = 0.05  # "near chance": less than 5 points above 1 / classes
SIMILAR = 0.01  # "similar" accuracies: within +-1 point
MEMORY_RATIO = 5.0  # "about 10x less memory": at least 5x (10 within a factor 2 from below)
BARRIER_SCALE = 0.01  # a barrier counts when above 1% of the chance-level loss ln(classes)
MIDPOINT = 0.5  # interpolation paths are compared at alpha = 0.5, fixed in advance (not chosen on test)
POINTS = {"scale": 100.0, "unit": "points"}
RELAX_THREE_TW = "python -m runners.relax --out DIR --t-w A,B,C (three or more; or runners.reproduce)"
RELAX_MATCHED = "python -m runners.relax --out DIR --matched-controls (the CNN trained to t_w + E; or runners.reproduce)"
RELAX_ELCN = "python -m runners.relax --out DIR --space efcn,elcn (or runners.reproduce)"
RELAX_EQUAL_BUDGET = "python -m runners.relax --out DIR with tw1 + tw2 among --t-w (or runners.reproduce)"


# --- per-seed views of the file ----------------------------------------------------------------------------


def _metric(store: h5py.File, protocol: str, metric: str) -> dict[int, float]:
    """``metric`` of every seed's run of ``protocol`` (``cnn``, ``efcn_tw4``), by seed; {} when absent."""
    return {seed: run_metric(store, name, metric) for seed, name in seed_runs(store).get(protocol, {}).items()}


def _required(store: h5py.File, protocol: str, metric: str) -> dict[int, float]:
    """Like :func:`_metric`, or :class:`MissingData` when ``protocol`` was not run."""
    return {seed: float(attrs.get(metric, math.nan)) for seed, attrs in protocol_attrs(store, seed_runs(store), protocol).items()}


def _switches(store: h5py.File, space: str = "efcn") -> list[tuple[int, str]]:
    return switch_protocols(store, seed_runs(store), space)


def _intermediate(switches: list[tuple[int, str]]) -> list[tuple[int, str]]:
    inner = switches[1:-1]
    if not inner:
        raise MissingData("three or more t_w (an intermediate one)", RELAX_THREE_TW)
    return inner


def _classes(store: h5py.File) -> int:
    config = provenance(store)[1]
    return int(config.get("num_classes", 100 if config.get("data") == "cifar100" else 10))


def _gains(store: h5py.File, reference: str) -> dict[int, dict[int, float]]:
    """gain_vs_final_cnn (``final``) or gain_vs_matched_cnn (``matched``) of every eFCN, by t_w then seed (finite only)."""
    gains = switch_gain_stats(store, reference=reference)
    return {int(t): {s: float(v) for s, v in zip(gains.seeds, row) if np.isfinite(v)} for t, row in zip(gains.x, gains.values)}


def _points(per_tw: Mapping[int, Mapping[int, float]], other: Mapping[int, Mapping[int, float]]) -> tuple[list, list, list]:
    """Aligned (x, y, seed) of every (t_w, seed) present in both tables."""
    xs, ys, seeds = [], [], []
    for t_w, values in per_tw.items():
        for seed, value in values.items():
            if seed in other.get(t_w, {}):
                xs.append(value), ys.append(other[t_w][seed]), seeds.append(seed)
    return xs, ys, seeds


def _by_tw(store: h5py.File, metric: str, space: str = "efcn") -> dict[int, dict[int, float]]:
    return {t_w: _metric(store, p, metric) for t_w, p in _switches(store, space)}


def _interior_peak(values: Mapping[float, float]) -> float:
    """The best value strictly inside the ordered keys minus the better of the two ends (NaN: fewer than 3)."""
    keys = sorted(k for k, v in values.items() if np.isfinite(v) and np.isfinite(k))
    if len(keys) < 3:
        return math.nan
    return max(values[k] for k in keys[1:-1]) - max(values[keys[0]], values[keys[-1]])


def _paths(store: h5py.File) -> dict[int, dict[int, InterpolationPath]]:
    """Interpolation paths recording a t_w, by t_w then seed (a path's ``seed`` attribute, else its position)."""
    grouped: dict[int, list] = defaultdict(list)
    for path in interpolation_paths(store):
        if path.attrs.get("t_w") is not None:
            grouped[int(path.attrs["t_w"])].append(path)
    if not grouped:
        raise MissingData("interpolation paths CNN -> eFCN(t_w) with a t_w attribute", INTERPOLATE)
    return {t_w: {int(p.attrs.get("seed", i)): p for i, p in enumerate(members)} for t_w, members in sorted(grouped.items())}


def _midpoint_acc(path: InterpolationPath, method: str) -> float:
    """Test accuracy at alpha = 0.5 (the nearest point within 0.1), NaN when the method or the point is absent."""
    if method not in path.curves:
        return math.nan
    alpha, acc = path.curves[method]["alpha"], path.curves[method]["test_acc"]
    near = int(np.argmin(np.abs(alpha - MIDPOINT)))
    return float(acc[near]) if abs(alpha[near] - MIDPOINT) <= 0.1 else math.nan


def _path_value(path: InterpolationPath, method: str, key: str) -> float:
    return float(path.method_attrs.get(method, {}).get(key, math.nan))


def _sharpness_by_seed(store: h5py.File, protocol: str) -> dict[int, Probed]:
    """The ``/sharpness`` groups of every seed's run of ``protocol``, by seed."""
    probed = sharpness_runs(store)
    return {seed: probed[name] for seed, name in seed_runs(store).get(protocol, {}).items() if name in probed}


def _coordinates(store: h5py.File) -> str:
    """The coordinates landscape claims compare in: the eFCN's when the file has them (comparable), else own."""
    return figure_coordinates(sharpness_runs(store))


def _tw_values(per_tw: Mapping[int, Mapping[int, float]]) -> dict[int, dict[int, float]]:
    """The t_w itself at every (t_w, seed) of ``per_tw``: the abscissa of a trend over t_w."""
    return {t: {s: float(t) for s in values} for t, values in per_tw.items()}


def _barrier_floor(store: h5py.File) -> float:
    return BARRIER_SCALE * math.log(_classes(store))


def _final_basin(probed: Probed, coordinates: str) -> tuple[float, bool]:
    """Basin width of the run's final model, and whether its search hit the cap (the width is then a lower bound)."""
    final = np.flatnonzero(probed.curve["final"] == 1)
    row = final[-1] if final.size else len(probed.curve["final"]) - 1
    basin = probed.basin(coordinates)
    return float(basin.lower_bound[row]), bool(np.isnan(basin.width[row]) and basin.censored[row] > 0)


# --- the claims ----------------------------------------------------------------------------------------------


@claim("A CNN beats the FCN of the same size", "paper Fig. 3; poster")
def cnn_beats_fcn(store: h5py.File) -> Claim:
    cnn = {s: final_cnn_acc(a) for s, a in protocol_attrs(store, seed_runs(store), "cnn").items()}
    part = paired_part("", cnn, _required(store, "fcn", "final_test_acc"))
    return measured("CNN − FCN final test acc", [part], Region(low=0.0), **POINTS)


@claim("Every eFCN beats the vanilla FCN of the same size", "supp. Fig. 3; poster")
def efcn_beats_fcn(store: h5py.File) -> Claim:
    fcn = _required(store, "fcn", "final_test_acc")
    parts = [paired_part(f"t_w = {t}", v, fcn) for t, v in _by_tw(store, "final_test_acc").items()]
    return measured("eFCN(t_w) − FCN final test acc, every t_w", parts, Region(low=0.0), **POINTS)


def _beats_cnn(store: h5py.File, gains: dict[int, dict[int, float]], name: str, command: str = RELAX) -> Claim:
    inner = {t for t, _ in _intermediate(_switches(store))}
    parts = [mean_part(f"t_w = {t}", g.values()) for t, g in gains.items() if t in inner]
    return measured(f"{name}, some intermediate t_w", parts, Region(low=0.0), mode="any", command=command, **POINTS)


@claim("An eFCN relaxed at an intermediate t_w ends above the final CNN", "paper Fig. 3; supp. Fig. 3; poster")
def beats_final_cnn(store: h5py.File) -> Claim:
    return _beats_cnn(store, _gains(store, "final"), "gain_vs_final_cnn")


@claim("… and above the CNN trained as many epochs (t_w + E)", "paper Fig. 3 (matched control)")
def beats_matched_cnn(store: h5py.File) -> Claim:
    return _beats_cnn(store, _gains(store, "matched"), "gain_vs_matched_cnn", RELAX_MATCHED)


@claim("The gain is largest at an intermediate t_w", "poster")
def gain_peaks_inside(store: h5py.File) -> Claim:
    gains = _gains(store, "final")
    seeds = sorted({s for g in gains.values() for s in g})
    part = mean_part("", [_interior_peak({t: g.get(s, math.nan) for t, g in gains.items()}) for s in seeds])
    return measured("per seed: best intermediate gain − better end gain (first, last t_w)", [part], Region(low=0.0), **POINTS)


def _trend(statistic: str, x: Mapping[int, Mapping[int, float]], y: Mapping[int, Mapping[int, float]], region: Region) -> Claim:
    return measured(statistic, [correlation_part(*_points(x, y))], region)


@claim("δ decreases with t_w (the earlier we relax, the further we escape)", "supp. Fig. 4 left; poster")
def delta_decreases(store: h5py.File) -> Claim:
    delta = _by_tw(store, "final_delta")
    return _trend("Spearman ρ(t_w, final δ)", _tw_values(delta), delta, Region(high=0.0))


@claim("δ grows with the train loss at embedding", "supp. Fig. 4 middle")
def delta_grows_with_initial_loss(store: h5py.File) -> Claim:
    return _trend("Spearman ρ(loss at embedding, final δ)", _by_tw(store, "initial_train_loss"), _by_tw(store, "final_delta"),
                  Region(low=0.0))


@claim("Test accuracy peaks at an optimal distance δ from the CNN subspace", "supp. Fig. 4 right; poster")
def optimal_delta(store: h5py.File) -> Claim:
    delta, acc = _by_tw(store, "final_delta"), _by_tw(store, "final_test_acc")
    seeds = sorted({s for v in acc.values() for s in v})
    peaks = [_interior_peak({delta[t].get(s, math.nan): acc[t].get(s, math.nan) for t in acc}) for s in seeds]
    return measured("per seed: best test acc at an inner δ − better of the two δ extremes", [mean_part("", peaks)],
                    Region(low=0.0), **POINTS)


@claim("Off-local blocks alone are useless (near chance)", "paper Fig. 5 right; poster")
def offlocal_useless(store: h5py.File) -> Claim:
    chance = 1.0 / _classes(store)
    parts = [mean_part(f"t_w = {t}", [v - chance for v in values.values()]) for t, values in _by_tw(store, "offlocal_only_acc").items()]
    return measured(f"off-local-only test acc − chance ({100 * chance:g}%), every t_w", parts, Region(high=CHANCE_MARGIN), **POINTS)


@claim("Local blocks alone improve with t_w", "paper Fig. 5 right")
def local_improves(store: h5py.File) -> Claim:
    local = _by_tw(store, "local_only_acc")
    return _trend("Spearman ρ(t_w, local-only test acc)", _tw_values(local), local, Region(low=0.0))


@claim("Train loss keeps falling after relaxing, even near convergence", "poster")
def train_loss_falls(store: h5py.File) -> Claim:
    final, start = _by_tw(store, "final_train_loss"), _by_tw(store, "initial_train_loss")
    parts = [paired_part(f"t_w = {t}", final[t], start[t]) for t in final]
    return measured("final − initial eFCN train loss, every t_w", parts, Region(high=0.0))


@claim("The linear path has a train-loss barrier, except at late t_w", "paper Fig. 6")
def linear_barrier(store: h5py.File) -> Claim:
    paths, floor = _paths(store), _barrier_floor(store)
    late = max(paths)
    parts = [mean_part(f"t_w = {t}", [_path_value(p, "linear", "barrier") - floor for p in by_seed.values()])
             for t, by_seed in paths.items() if t != late]
    parts.append(mean_part(f"t_w = {late} (latest)", [floor - _path_value(p, "linear", "barrier") for p in paths[late].values()]))
    return measured(f"barrier − {floor:.3g} at earlier t_w, {floor:.3g} − barrier at the latest", parts, Region(low=0.0),
                    command=INTERPOLATE)


@claim("The string lowers the barrier but does not remove it", "paper Fig. 6")
def string_lowers_barrier(store: h5py.File) -> Claim:
    paths, floor = _paths(store), _barrier_floor(store)
    parts = []
    for t, by_seed in paths.items():
        if t == max(paths):
            continue
        linear, string = ([_path_value(p, m, "barrier") for p in by_seed.values()] for m in ("linear", "string"))
        parts += [mean_part(f"t_w = {t}: lowered", np.subtract(linear, string)),
                  mean_part(f"t_w = {t}: remains", np.subtract(string, floor))]
    return measured(f"linear − string barrier and string barrier − {floor:.3g}, every t_w but the latest", parts,
                    Region(low=0.0), command=INTERPOLATE)


@claim("Interpolated paths reach a higher test accuracy than both endpoints", "paper Fig. 6")
def paths_beat_endpoints(store: h5py.File) -> Claim:
    parts = []
    for t, by_seed in _paths(store).items():
        for method in ("linear", "string"):
            gains = [_midpoint_acc(p, method) - max(_path_value(p, method, "test_a_acc"), _path_value(p, method, "test_b_acc"))
                     for p in by_seed.values()]
            parts.append(mean_part(f"t_w = {t} {method}", gains))
    return measured("test acc at α = 0.5 − better endpoint, linear and string, every t_w", parts, Region(low=0.0),
                    command=INTERPOLATE, **POINTS)


@claim("Interpolating in output space gains more than in weight space", "paper Fig. 6")
def output_beats_weights(store: h5py.File) -> Claim:
    parts = [mean_part(f"t_w = {t} vs {method}", [_midpoint_acc(p, "output") - _midpoint_acc(p, method) for p in by_seed.values()])
             for t, by_seed in _paths(store).items() for method in ("linear", "string")]
    return measured("output − weight-space test acc at α = 0.5, every t_w", parts, Region(low=0.0),
                    command=INTERPOLATE, **POINTS)


@claim("The gain is highest where the CNN is sharpest", "poster")
def gain_where_sharpest(store: h5py.File) -> Claim:
    points = gain_vs_sharpness(store, coordinates=_coordinates(store))
    r, finite = points.correlation, np.isfinite(points.top_eig) & np.isfinite(points.gain)
    part = Part(f"{r.n} points", r.rho, r.ci_low, r.ci_high, len(set(points.seed[finite].tolist())))
    return measured(f"Spearman ρ(CNN λ₁ at t_w in {points.coordinates} coordinates, gain_vs_final_cnn)", [part], Region(low=0.0),
                    command=SHARPNESS)


@claim("eFCNs end in wider basins than the CNN", "poster")
def wider_basins(store: h5py.File) -> Claim:
    coordinates = _coordinates(store)
    cnn = {s: _final_basin(p, coordinates) for s, p in _sharpness_by_seed(store, "cnn").items()}
    parts = []
    for t_w, protocol in _switches(store):
        efcn = {s: _final_basin(p, coordinates) for s, p in _sharpness_by_seed(store, protocol).items() if s in cnn}
        if efcn:
            ours, theirs = any(c for _, c in efcn.values()), any(cnn[s][1] for s in efcn)
            bound = "both" if ours and theirs else "lower" if ours else "upper" if theirs else None
            part = paired_part(f"t_w = {t_w}", {s: w for s, (w, _) in efcn.items()}, {s: cnn[s][0] for s in efcn})
            parts.append(replace(part, bound=bound))
    if not parts:
        raise MissingData("/sharpness/cnn and /sharpness/efcn_tw<t> (final models)", SHARPNESS)
    return measured(f"eFCN − CNN basin width of the final models ({coordinates} coordinates), every t_w", parts, Region(low=0.0),
                    command=SHARPNESS)


@claim("eLCN gains are similar to eFCN gains", "poster")
def elcn_similar_gain(store: h5py.File) -> Claim:
    efcn = _by_tw(store, "final_test_acc")
    parts = [paired_part(f"t_w = {t}", v, efcn[t]) for t, v in _by_tw(store, "final_test_acc", "elcn").items() if t in efcn]
    return measured("eLCN − eFCN final test acc, every t_w", parts, Region(-SIMILAR, SIMILAR), **POINTS)


@claim("… at about 10× less memory than the eFCN", "poster")
def elcn_less_memory(store: h5py.File) -> Claim:
    efcn, elcn = dict(_switches(store)), dict(_switches(store, "elcn"))
    t_w = min(set(efcn) & set(elcn), default=None)
    if t_w is None:
        raise MissingData("an eFCN and an eLCN at the same t_w", RELAX_ELCN)
    ratio = min(_metric(store, efcn[t_w], "num_params").values()) / min(_metric(store, elcn[t_w], "num_params").values())
    return measured("eFCN / eLCN parameters", [Part("", ratio, ratio, ratio, 1, exact=True)], Region(low=MEMORY_RATIO), unit="×")


@claim("Hierarchical CNN → eLCN → eFCN relaxation adds accuracy over one relaxation at equal epoch budget", "poster")
def hierarchical_adds(store: h5py.File) -> Claim:
    cells = [c for c in hierarchical_vs_single(store, equal_budget=True) if c.difference.n]
    if not cells:
        raise MissingData("efcn_tw<tw1 + tw2>, the equal-budget single relaxation", RELAX_EQUAL_BUDGET)
    parts = [Part(f"tw1 = {c.tw1}, tw2 = {c.tw2}", c.difference.mean, c.difference.ci_low, c.difference.ci_high, c.difference.n)
             for c in cells]
    return measured("hierarchical − eFCN(tw1 + tw2) final test acc, some (tw1, tw2)", parts, Region(low=0.0), mode="any", **POINTS)


CLAIMS: tuple[Callable[[h5py.File], Claim], ...] = (
    cnn_beats_fcn, efcn_beats_fcn, beats_final_cnn, beats_matched_cnn, gain_peaks_inside, delta_decreases,
    delta_grows_with_initial_loss, optimal_delta, offlocal_useless, local_improves, train_loss_falls, linear_barrier,
    string_lowers_barrier, paths_beat_endpoints, output_beats_weights, gain_where_sharpest, wider_basins, elcn_similar_gain,
    elcn_less_memory, hierarchical_adds,
)
"""Every claim checked, in the order of the table."""


def check_claims(store: h5py.File) -> list[Claim]:
    """Every claim of :data:`CLAIMS`, measured on the open file."""
    return [check(store) for check in CLAIMS]


def claims_origin(store: h5py.File, label: str) -> str:
    """One line saying which run the claims were measured on: ``label``, its command and git commit."""
    attrs = provenance(store)[0]
    return f"Measured on `{label}` (command `{attrs.get('command', '?')}`, git commit {attrs.get('git_commit', '?')})."


def claims_markdown(claims: list[Claim], *, origin: str = "") -> str:
    """The claims table (claim, source, statistic and claimed region, value [95% CI], seeds, verdict) and the rule.

    Args:
        claims: the rows, e.g. :func:`check_claims`.
        origin: a line put above the table (:func:`claims_origin`), for a table shown away from its report.
    """
    lines = [origin, ""] if origin else []
    lines += ["| claim | source | statistic (claimed) | measured [95% CI] | n | verdict |", "|---|---|---|---|---|---|"]
    for row in claims:
        n = "exact" if row.part is not None and row.part.exact else str(row.part.n if row.part else 0)
        verdict = f"**{row.verdict}**" + (f" ({row.note})" if row.note else "")
        lines.append(f"| {row.text} | {row.source} | {row.statistic or '-'} | {row.value_text()} | {n} | {verdict} |")
    return "\n".join([*lines, "", f"Verdict rule: {RULE}", ""])
