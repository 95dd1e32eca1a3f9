"""The claims table: each verdict rule both ways on synthetic files whose answer is known, numbers equal the file's."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest
from scipy import stats

from results import CurveWriter, open_store, write_attrs
from runners import figures
from runners._figures import write_report
from runners._figures.claims import (CLAIMS, RULE, beats_final_cnn, beats_matched_cnn, check_claims, claims_markdown, claims_origin,
                                     cnn_beats_fcn,
                                     delta_decreases, efcn_beats_fcn, elcn_similar_gain, offlocal_useless, paths_beat_endpoints,
                                     wider_basins)
from runners._figures.verdicts import Part, Region, combine, decide

COLUMNS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "delta", "lr")
SEEDS = (0, 1, 2)


def _run(store, protocol, seed, attrs, *, epochs=4, acc=0.9, cnn_curve=None, several=True):
    """One run group (name suffixed _s<seed> when ``several``) with a linear history, or the CNN's ``cnn_curve``."""
    name = f"{protocol}_s{seed}" if several else protocol
    writer = CurveWriter(store, f"runs/{name}/history", columns=COLUMNS, index="epoch")
    for epoch in range(epochs + 1):
        test_acc = cnn_curve[epoch] if cnn_curve is not None else 0.1 + (acc - 0.1) * epoch / epochs
        writer.append(epoch=epoch, train_loss=2.0 - epoch / epochs, train_acc=0.5, test_loss=1.0, test_acc=test_acc, delta=0.1, lr=1e-3)
    write_attrs(store[f"runs/{name}"], {"epochs": epochs, "final_test_acc": acc, "final_train_loss": 1.0, "num_params": 1000,
                                        "seed": seed, "protocol_run": protocol, **attrs})


def _relax_file(path, cnn, fcn, efcn, *, seeds=SEEDS, extra=None):
    """CNN / FCN final accuracies by seed and eFCN final accuracies by t_w then seed."""
    several = len(seeds) > 1
    with open_store(path) as store:
        for s in seeds:
            _run(store, "cnn", s, {"space": "cnn"}, epochs=8, acc=cnn[s], several=several)
            _run(store, "fcn", s, {"space": "fcn"}, epochs=8, acc=fcn[s], several=several)
            for t_w, by_seed in efcn.items():
                _run(store, f"efcn_tw{t_w}", s, {"space": "efcn", "t_w": t_w, **(extra or {}).get(t_w, {}).get(s, {})},
                     acc=by_seed[s], several=several)
    return path


def _t_ci(values):
    """Mean and Student-t 95% CI, computed here independently of results.stats."""
    values = np.asarray(values, dtype=float)
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
    return values.mean(), values.mean() - half, values.mean() + half


def _claim(path, check):
    with h5py.File(path, "r") as store:
        return check(store)


# --- the rule on single estimates ---------------------------------------------------------------------------


@pytest.mark.parametrize("ci, verdict", [((0.01, 0.03), "holds"), ((-0.03, -0.01), "fails"), ((-0.01, 0.03), "inconclusive")])
def test_decide_a_half_line_both_ways(ci, verdict):
    assert decide(Part("", sum(ci) / 2, *ci, n=3), Region(low=0.0))[0] == verdict


def test_decide_an_interval_and_one_seed():
    band = Region(-0.01, 0.01)
    assert decide(Part("", 0.0, -0.005, 0.005, n=3), band)[0] == "holds"
    assert decide(Part("", 0.05, 0.03, 0.07, n=3), band)[0] == "fails"
    assert decide(Part("", 0.01, 0.0, 0.02, n=3), band)[0] == "inconclusive"
    assert decide(Part("", 0.5, math.nan, math.nan, n=1), Region(low=0.0)) == ("inconclusive", "1 seed")
    assert decide(Part("", 12.0, 12.0, 12.0, n=1, exact=True), Region(low=5.0))[0] == "holds"


def test_a_lower_bound_cannot_fail_a_lower_claim_nor_hold_an_upper_one():
    # the true difference is at least the estimate: "> 0" can hold, cannot fail; "< 0" can fail, cannot hold
    above, below = Part("", 0.2, 0.1, 0.3, 3, bound="lower"), Part("", -0.2, -0.3, -0.1, 3, bound="lower")
    assert decide(above, Region(low=0.0))[0] == "holds" and decide(below, Region(low=0.0))[0] == "inconclusive"
    assert decide(above, Region(high=0.0))[0] == "fails" and decide(below, Region(high=0.0))[0] == "inconclusive"


def test_combine_every_part_and_some_part():
    holds, fails, unsure = Part("a", 2, 1, 3, 3), Part("b", -2, -3, -1, 3), Part("c", 0, -1, 1, 3)
    region = Region(low=0.0)
    assert combine([holds, fails], region, "all")[:2] == (fails, "fails")
    assert combine([holds, unsure], region, "all")[:2] == (unsure, "inconclusive")
    assert combine([holds, holds], region, "all")[1] == "holds"
    assert combine([fails, holds], region, "any")[:2] == (holds, "holds")
    assert combine([fails, fails], region, "any")[1] == "fails"
    assert combine([fails, unsure], region, "any")[1] == "inconclusive"


# --- claims on synthetic files ----------------------------------------------------------------------------------


@pytest.mark.parametrize("diffs, verdict", [((0.10, 0.12, 0.11), "holds"), ((-0.10, -0.12, -0.11), "fails"),
                                            ((0.05, -0.06, 0.01), "inconclusive")])
def test_cnn_beats_fcn_paired_by_seed_and_the_table_shows_the_file_numbers(tmp_path, diffs, verdict):
    fcn = {0: 0.5, 1: 0.7, 2: 0.6}  # seed-to-seed spread much larger than the paired differences
    cnn = {s: fcn[s] + d for s, d in zip(SEEDS, diffs)}
    path = _relax_file(tmp_path / "r.h5", cnn, fcn, {0: fcn, 2: fcn, 4: fcn})
    claim = _claim(path, cnn_beats_fcn)
    assert claim.verdict == verdict and claim.part.n == 3
    mean, low, high = _t_ci([100 * (cnn[s] - fcn[s]) for s in SEEDS])
    row = next(line for line in claims_markdown([claim]).splitlines() if line.startswith("| A CNN beats"))
    assert f"| {mean:+.2f} [{low:+.2f}, {high:+.2f}] | 3 | **{verdict}** |" in row


def test_one_seed_is_inconclusive_and_says_so(tmp_path):
    path = _relax_file(tmp_path / "r.h5", {0: 0.9}, {0: 0.5}, {0: {0: 0.6}, 2: {0: 0.95}, 4: {0: 0.8}}, seeds=(0,))
    with h5py.File(path, "r") as store:
        assert "cnn_s0" not in store["runs"]  # one seed: names are unchanged
    for check in (cnn_beats_fcn, efcn_beats_fcn, beats_final_cnn):
        claim = _claim(path, check)
        assert (claim.verdict, claim.note, claim.part.n) == ("inconclusive", "1 seed", 1)
    assert "**inconclusive** (1 seed)" in claims_markdown([_claim(path, cnn_beats_fcn)])


def test_every_efcn_fails_on_one_t_w_and_the_row_names_it(tmp_path):
    fcn = {0: 0.5, 1: 0.52, 2: 0.51}
    good, bad = {s: fcn[s] + 0.1 + 0.01 * s for s in SEEDS}, {s: fcn[s] - 0.1 - 0.01 * s for s in SEEDS}
    assert _claim(_relax_file(tmp_path / "a.h5", fcn, fcn, {0: good, 4: good}), efcn_beats_fcn).verdict == "holds"
    claim = _claim(_relax_file(tmp_path / "b.h5", fcn, fcn, {0: good, 4: bad}), efcn_beats_fcn)
    assert claim.verdict == "fails" and claim.part.label == "t_w = 4"


def test_some_intermediate_t_w_beats_the_final_cnn_and_the_ends_do_not_count(tmp_path):
    cnn = {0: 0.80, 1: 0.82, 2: 0.81}
    above = {s: cnn[s] + 0.02 + 0.001 * s for s in SEEDS}
    below = {s: cnn[s] - 0.05 - 0.001 * s for s in SEEDS}
    # only the last t_w (not intermediate) is above: fails; an intermediate one above: holds
    assert _claim(_relax_file(tmp_path / "a.h5", cnn, cnn, {0: below, 4: below, 8: above}), beats_final_cnn).verdict == "fails"
    claim = _claim(_relax_file(tmp_path / "b.h5", cnn, cnn, {0: below, 4: above, 8: below}), beats_final_cnn)
    assert claim.verdict == "holds" and claim.part.label == "t_w = 4"
    mean, low, high = _t_ci([100 * (above[s] - cnn[s]) for s in SEEDS])
    assert claim.part.estimate * 100 == pytest.approx(mean) and claim.part.ci_low * 100 == pytest.approx(low)


def test_matched_gain_reads_the_cnn_at_t_w_plus_e(tmp_path):
    path = tmp_path / "m.h5"
    with open_store(path) as store:
        for s in SEEDS:
            # the CNN at epoch t_w + E = 2 + 4 = 6 is at 0.9 + 0.01 s; its final (epoch 8) is lower
            curve = [0.1, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9 + 0.01 * s, 0.85, 0.7]
            _run(store, "cnn", s, {"space": "cnn"}, epochs=8, acc=0.7, cnn_curve=curve)
            for t_w in (0, 2, 4):
                _run(store, f"efcn_tw{t_w}", s, {"space": "efcn", "t_w": t_w}, epochs=4, acc=0.8)
    final, matched = _claim(path, beats_final_cnn), _claim(path, beats_matched_cnn)
    assert final.verdict == "holds" and matched.verdict == "fails"
    mean, _, _ = _t_ci([0.8 - (0.9 + 0.01 * s) for s in SEEDS])
    assert matched.part.estimate == pytest.approx(mean) and matched.part.label == "t_w = 2"


def test_matched_gain_is_not_measured_when_the_cnn_stopped_before_t_w_plus_e(tmp_path):
    cnn = {s: 0.8 for s in SEEDS}
    efcn = {s: 0.85 + 0.01 * s for s in SEEDS}
    path = _relax_file(tmp_path / "r.h5", cnn, cnn, {0: efcn, 6: efcn, 8: efcn})  # CNN of 8 epochs; 6 + 4 = 10 > 8
    claim = _claim(path, beats_matched_cnn)
    assert claim.verdict == "not measured" and "--matched-controls" in claim.note


@pytest.mark.parametrize("sign, verdict", [(-1, "holds"), (1, "fails")])
def test_delta_trend_by_rank_correlation(tmp_path, sign, verdict):
    cnn = {s: 0.8 for s in SEEDS}
    t_ws = (0, 2, 4, 8, 16)
    extra = {t: {s: {"final_delta": 0.5 + sign * 0.02 * t + 0.001 * s} for s in SEEDS} for t in t_ws}
    path = _relax_file(tmp_path / "r.h5", cnn, cnn, {t: cnn for t in t_ws}, extra=extra)
    claim = _claim(path, delta_decreases)
    assert claim.verdict == verdict
    x = [t for t in t_ws for _ in SEEDS]
    y = [extra[t][s]["final_delta"] for t in t_ws for s in SEEDS]
    assert claim.part.estimate == pytest.approx(stats.spearmanr(x, y).statistic)


def test_offlocal_near_chance_and_elcn_similar_both_ways(tmp_path):
    cnn = {s: 0.8 for s in SEEDS}
    near = {0: {s: {"offlocal_only_acc": 0.11 + 0.002 * s} for s in SEEDS}, 4: {s: {"offlocal_only_acc": 0.10 + 0.002 * s} for s in SEEDS}}
    far = {0: near[0], 4: {s: {"offlocal_only_acc": 0.5 + 0.002 * s} for s in SEEDS}}
    assert _claim(_relax_file(tmp_path / "a.h5", cnn, cnn, {0: cnn, 4: cnn}, extra=near), offlocal_useless).verdict == "holds"
    assert _claim(_relax_file(tmp_path / "b.h5", cnn, cnn, {0: cnn, 4: cnn}, extra=far), offlocal_useless).verdict == "fails"
    path = tmp_path / "c.h5"
    with open_store(path) as store:
        for s in SEEDS:
            for space, acc in (("efcn", 0.80 + 0.01 * s), ("elcn", 0.801 + 0.01 * s)):
                _run(store, f"{space}_tw2", s, {"space": space, "t_w": 2}, acc=acc)
    assert _claim(path, elcn_similar_gain).verdict == "holds"


def _paths_file(path, midpoint):
    """Interpolation paths at t_w 0 and 4 over three seeds: endpoints 0.80 / 0.82, test acc ``midpoint[s]`` at α = 0.5."""
    with open_store(path) as store:
        for t_w in (0, 4):
            for s in SEEDS:
                group = store.require_group(f"interpolation/tw{t_w}_s{s}")
                write_attrs(group, {"t_w": t_w, "seed": s})
                for method in ("linear", "string", "output"):
                    curve = CurveWriter(group, method, columns=("alpha", "train_loss", "test_acc"), index="alpha")
                    for alpha, acc in zip((0.0, 0.25, 0.5, 0.75, 1.0), (0.80, 0.81, midpoint[s], 0.81, 0.82)):
                        curve.append(alpha=alpha, train_loss=1.0, test_acc=acc)
                    write_attrs(curve.group, {"barrier": 0.5, "test_a_acc": 0.80, "test_b_acc": 0.82})
    return path


def test_interpolated_paths_beat_the_endpoints_at_the_midpoint_fixed_in_advance(tmp_path):
    above = _claim(_paths_file(tmp_path / "a.h5", {s: 0.85 + 0.001 * s for s in SEEDS}), paths_beat_endpoints)
    assert above.verdict == "holds"
    mean, low, _ = _t_ci([100 * (0.85 + 0.001 * s - 0.82) for s in SEEDS])
    assert 100 * above.part.estimate == pytest.approx(mean) and 100 * above.part.ci_low == pytest.approx(low)
    assert _claim(_paths_file(tmp_path / "b.h5", {s: 0.70 + 0.001 * s for s in SEEDS}), paths_beat_endpoints).verdict == "fails"


def _basins_file(path, cnn_width, efcn_width, *, efcn_censored):
    with open_store(path) as store:
        for s in SEEDS:
            _run(store, "cnn", s, {"space": "cnn"}, acc=0.8)
            _run(store, "efcn_tw2", s, {"space": "efcn", "t_w": 2}, acc=0.8)
            for protocol, width, censored in (("cnn", cnn_width, 0.0), ("efcn_tw2", efcn_width, efcn_censored)):
                curve = CurveWriter(store, f"sharpness/{protocol}_s{s}/curve",
                                    columns=("row", "epoch", "final", "trace", "trace_se", "basin_width", "basin_width_std",
                                             "basin_censored", "train_loss"), index="row")
                curve.append(row=0, epoch=4, final=1, trace=1.0, trace_se=0.1, basin_width=width + 0.01 * s, basin_width_std=0.1,
                             basin_censored=censored, train_loss=0.1)
                store[f"sharpness/{protocol}_s{s}"].create_dataset("top_eigs", data=np.array([[1.0]]))
    return path


def test_wider_basins_with_censored_widths(tmp_path):
    assert _claim(_basins_file(tmp_path / "a.h5", 0.5, 1.0, efcn_censored=0.0), wider_basins).verdict == "holds"
    assert _claim(_basins_file(tmp_path / "b.h5", 1.0, 0.5, efcn_censored=0.0), wider_basins).verdict == "fails"
    # the eFCN's width hit the cap: 0.5 is only a lower bound, so "narrower" cannot be concluded
    censored = _claim(_basins_file(tmp_path / "c.h5", 1.0, 0.5, efcn_censored=0.5), wider_basins)
    assert censored.verdict == "inconclusive" and censored.note == "censored basin widths"
    assert _claim(_basins_file(tmp_path / "d.h5", 0.5, 1.0, efcn_censored=0.5), wider_basins).verdict == "holds"


def test_an_empty_file_measures_nothing_and_names_the_commands(tmp_path):
    path = tmp_path / "empty.h5"
    with open_store(path):
        pass
    with h5py.File(path, "r") as store:
        claims = check_claims(store)
    assert len(claims) == len(CLAIMS) >= 20
    assert all(c.verdict == "not measured" and "python -m runners." in c.note for c in claims)


def test_the_report_opens_with_the_claims_table_and_the_rule(tmp_path):
    fcn = {0: 0.5, 1: 0.7, 2: 0.6}
    path = _relax_file(tmp_path / "r.h5", {s: fcn[s] + 0.1 for s in SEEDS}, fcn, {0: fcn, 2: fcn, 4: fcn})
    report = write_report(path, tmp_path / "report.md", {}, {}, seconds=0).read_text()
    sections = [line for line in report.splitlines() if line.startswith("## ")]
    assert sections[0] == "## Claims, checked"
    assert report.index("| A CNN beats the FCN of the same size |") < report.index(f"Verdict rule: {RULE}") < report.index("## Fig. 3-5")
    assert "best (chosen on test)" in report
    # with several seeds the Fig. 3 table gives mean [95% CI] and n
    mean, low, high = _t_ci([100 * fcn[s] for s in SEEDS])
    assert f"| 2 | {mean:.1f} [{low:.1f}, {high:.1f}] |" in report and report.split("| 2 |")[1].splitlines()[0].endswith("| 3 |")


def test_cli_writes_the_claims_markdown_for_the_readme(tmp_path, capsys):
    fcn = {0: 0.5, 1: 0.7, 2: 0.6}
    path = _relax_file(tmp_path / "r.h5", {s: fcn[s] + 0.1 for s in SEEDS}, fcn, {0: fcn, 2: fcn, 4: fcn})
    out = tmp_path / "claims.md"
    assert figures.main(["--results", str(path), "--claims-md", str(out)]) == 0
    with h5py.File(path, "r") as store:
        assert out.read_text() == claims_markdown(check_claims(store), origin=claims_origin(store, str(path)))
    assert out.read_text().startswith(f"Measured on `{path}`")
    assert "A CNN beats the FCN of the same size" in out.read_text() and not (tmp_path / "figures").exists()


def test_the_report_tables_expandnets_compressed_accuracy_paired_with_the_compact_network(tmp_path):
    path = tmp_path / "expandnets.h5"
    compact, ck = {0: 0.70, 1: 0.74, 2: 0.72}, {0: 0.73, 1: 0.76, 2: 0.75}
    with open_store(path) as store:
        for mode, accs in (("compact", compact), ("ck", ck)):
            for s in SEEDS:
                curve = CurveWriter(store, f"runs/{mode}_seed{s}/history", columns=("epoch", "train_acc", "test_acc"), index="epoch")
                curve.append(epoch=0, train_acc=0.5, test_acc=0.5)
                write_attrs(store[f"runs/{mode}_seed{s}"], {"mode": mode, "l2": "normal", "seed": s, "status": "done",
                                                           "final_test_acc": accs[s], "compressed_test_acc": accs[s]})
    report = write_report(path, tmp_path / "report.md", {}, {}, seconds=0).read_text()
    mean, low, high = _t_ci([100 * (ck[s] - compact[s]) for s in SEEDS])
    row = next(line for line in report.splitlines() if line.startswith("| ck |"))
    assert row.endswith(f"| {mean:+.1f} [{low:+.1f}, {high:+.1f}] | 3 |")


def test_the_report_gives_the_cnn_trained_to_near_zero_loss(tmp_path):
    fcn = {0: 0.5, 1: 0.7, 2: 0.6}
    path = _relax_file(tmp_path / "r.h5", {s: fcn[s] + 0.1 for s in SEEDS}, fcn, {0: fcn, 2: fcn, 4: fcn})
    with h5py.File(path, "r+") as store:
        for s, (epoch, acc) in zip(SEEDS, ((6, 0.81), (7, 0.83), (8, 0.82))):
            write_attrs(store[f"runs/cnn_s{s}"], {"near_zero_loss_threshold": 0.01, "near_zero_loss_epoch": epoch,
                                                  "near_zero_loss_test_acc": acc})
    report = write_report(path, tmp_path / "report.md", {}, {}, seconds=0).read_text()
    _, low, high = _t_ci([81, 83, 82])
    assert f"(≤ 0.01, the poster's protocol): first at epoch 7 [" in report and f"test accuracy there 82.0 [{low:.1f}, {high:.1f}]%" in report
