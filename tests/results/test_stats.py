"""Seed statistics: closed forms, interval coverage on simulated data, the pairing gain, Spearman's bootstrap."""

import math

import numpy as np
import pytest
from scipy.stats import t

from results import paired, rank_correlation, summarize


def test_summarize_matches_the_closed_form_of_a_t_interval():
    s = summarize([2.0, 4.0, 9.0])
    mean, std = 5.0, math.sqrt(((2 - 5) ** 2 + (4 - 5) ** 2 + (9 - 5) ** 2) / 2)
    half = t.ppf(0.975, 2) * std / math.sqrt(3)
    assert s.n == 3 and s.mean == pytest.approx(mean) and s.std == pytest.approx(std)
    assert (s.ci_low, s.ci_high) == pytest.approx((mean - half, mean + half))


def test_summarize_drops_nans_and_leaves_a_single_value_without_spread():
    assert summarize([1.0, math.nan, 3.0]).n == 2
    single = summarize([7.0])
    assert single.mean == 7.0 and single.n == 1
    assert all(math.isnan(v) for v in (single.std, single.ci_low, single.ci_high))
    assert summarize([]).n == 0 and math.isnan(summarize([]).mean)


def test_as_attrs_names_every_field_with_the_prefix():
    attrs = summarize([1.0, 2.0]).as_attrs("final_test_acc")
    assert set(attrs) == {f"final_test_acc_{k}" for k in ("mean", "std", "ci_low", "ci_high", "n")}
    assert attrs["final_test_acc_n"] == 2 and attrs["final_test_acc_mean"] == 1.5


def test_the_95_percent_interval_covers_the_true_mean_about_95_percent_of_the_time():
    # 2000 intervals of 5 normal draws: the coverage's binomial SE is sqrt(.95*.05/2000) ~ 0.005,
    # so 0.93..0.97 is a 4-SE tolerance
    rng = np.random.default_rng(0)
    draws = rng.normal(3.0, 2.0, size=(2000, 5))
    covered = np.mean([s.ci_low <= 3.0 <= s.ci_high for s in map(summarize, draws)])
    assert 0.93 <= covered <= 0.97


def test_paired_interval_is_narrower_when_seeds_share_an_offset():
    rng = np.random.default_rng(1)
    offset = rng.normal(0.0, 5.0, size=6)  # the seed's own luck, shared by both conditions
    a = 80.0 + offset + rng.normal(0.0, 0.3, size=6) + 1.0
    b = 80.0 + offset + rng.normal(0.0, 0.3, size=6)
    pair, unpaired_a, unpaired_b = paired(a, b), summarize(a), summarize(b)
    unpaired_half = t.ppf(0.975, 10) * math.sqrt(unpaired_a.std**2 / 6 + unpaired_b.std**2 / 6)
    assert pair.half_width < unpaired_half / 5
    assert pair.mean == pytest.approx(np.mean(a - b)) and pair.ci_low > 0


def test_paired_refuses_different_lengths_in_one_line():
    with pytest.raises(ValueError, match="same seeds") as error:
        paired([1.0, 2.0], [1.0])
    assert "\n" not in str(error.value)


def test_rank_correlation_of_a_monotone_relation_is_one_and_its_interval_is_reproducible():
    x = np.arange(10.0)
    r = rank_correlation(x, x**3)
    assert r.n == 10 and (r.rho, r.ci_low, r.ci_high) == pytest.approx((1.0, 1.0, 1.0))
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=30), rng.normal(size=30)
    first, again = rank_correlation(a, b, seed=4), rank_correlation(a, b, seed=4)
    assert first == again and first.ci_low < first.rho < first.ci_high


def test_rank_correlation_bootstrap_interval_excludes_zero_only_for_a_real_relation():
    rng = np.random.default_rng(3)
    x = rng.normal(size=40)
    strong = rank_correlation(x, -x + 0.3 * rng.normal(size=40))
    none = rank_correlation(x, rng.normal(size=40))
    assert strong.ci_high < 0
    assert none.ci_low < 0 < none.ci_high


def test_rank_correlation_with_too_few_points_has_no_interval():
    r = rank_correlation([1.0, 2.0], [2.0, 1.0])
    assert r.rho == pytest.approx(-1.0) and math.isnan(r.ci_low) and r.n == 2
    with pytest.raises(ValueError, match="one y per x"):
        rank_correlation([1.0], [1.0, 2.0])
