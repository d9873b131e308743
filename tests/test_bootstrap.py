"""Paired bootstrap over test subjects: intervals equal scipy's on fixed data, cover 95% of the time, resample
whole subjects, pair the challenger with the champion, and say when there are too few subjects.
"""

import numpy as np
import pytest
from scipy import stats

from patientml_widgets import bootstrap
from patientml_widgets.errors import ValidationError


@pytest.mark.parametrize(("ours", "scipys"), [("bca", "BCa"), ("percentile", "percentile")])
def test_one_example_per_subject_equals_scipys_bootstrap(ours, scipys):
    rng = np.random.default_rng(0)
    dice = rng.beta(8, 2, 60)  # skewed, as Dice is: BCa and percentile differ here
    got = bootstrap.paired_bootstrap(
        {"dice": dice}, [f"p{i}" for i in range(60)], resamples=20_000, seed=1, method=ours
    )
    ref = stats.bootstrap((dice,), np.mean, n_resamples=20_000, method=scipys, random_state=2)
    m = got["metrics"]["dice"]
    assert m["value"] == pytest.approx(dice.mean())
    assert m["low"] == pytest.approx(ref.confidence_interval.low, abs=0.002)
    assert m["high"] == pytest.approx(ref.confidence_interval.high, abs=0.002)


def test_slices_of_one_patient_are_never_split_across_a_resample():
    subjects = ["a"] * 5 + ["b"] * 3 + ["c"] * 7 + ["d"]
    index, n = bootstrap.subject_index(subjects)
    counts = bootstrap.resample_counts(n, 500, np.random.default_rng(0))
    assert counts.shape == (500, 4) and (counts.sum(1) == 4).all()
    weights = counts[:, index]  # how often each example is taken in each resample
    for s in range(n):
        of_s = weights[:, index == s]
        assert (of_s == of_s[:, :1]).all()  # all of a patient's slices, or none, as often as the patient
    # a subject-level interval is the interval of the per-subject means' bootstrap, not of the slices'
    rng = np.random.default_rng(3)
    per_subject = rng.normal(0.7, 0.1, 30)
    slices = np.repeat(per_subject, 10) + rng.normal(0, 0.001, 300)  # 10 near-identical slices per patient
    names = np.repeat([f"p{i}" for i in range(30)], 10)
    by_subject = bootstrap.paired_bootstrap({"m": slices}, names, resamples=5000)["metrics"]["m"]
    by_slice = bootstrap.paired_bootstrap({"m": slices}, range(300), resamples=5000)["metrics"]["m"]
    width = by_subject["high"] - by_subject["low"]
    assert width == pytest.approx(2 * 1.96 * per_subject.std() / np.sqrt(30), rel=0.15)
    assert width > 2.5 * (by_slice["high"] - by_slice["low"])  # slices as if independent: far too narrow


def test_the_95_percent_interval_covers_the_truth_about_95_percent_of_the_time():
    rng = np.random.default_rng(11)
    hits_mean = hits_diff = 0
    draws = 1000
    for k in range(draws):
        n = 40
        subject_effect = rng.normal(0, 0.05, n)
        champion = 0.80 + subject_effect + rng.normal(0, 0.05, n)
        challenger = champion + 0.02 + rng.normal(0, 0.03, n)  # true difference 0.02, true mean 0.82
        out = bootstrap.paired_bootstrap({"dice": challenger}, range(n), {"dice": champion}, resamples=1000, seed=k)
        m, d = out["metrics"]["dice"], out["difference"]["dice"]
        hits_mean += m["low"] <= 0.82 <= m["high"]
        hits_diff += d["low"] <= 0.02 <= d["high"]
    assert 0.92 <= hits_mean / draws <= 0.98
    assert 0.92 <= hits_diff / draws <= 0.98


def test_pairing_narrows_the_difference_and_nans_leave_examples_out():
    rng = np.random.default_rng(5)
    base = rng.normal(0.7, 0.15, 50)
    out = bootstrap.paired_bootstrap({"dice": base + 0.01}, range(50), {"dice": base}, resamples=2000)
    d = out["difference"]["dice"]
    assert d["value"] == pytest.approx(0.01) and d["high"] - d["low"] < 1e-9  # the same shift on every draw
    m = out["metrics"]["dice"]
    assert m["high"] - m["low"] > 0.05
    with_gap = base.copy()
    with_gap[:5] = np.nan  # a class absent from 5 examples
    gap = bootstrap.paired_bootstrap({"dice": with_gap}, range(50), resamples=500)["metrics"]["dice"]
    assert gap["value"] == pytest.approx(np.nanmean(with_gap))


def test_too_few_subjects_is_said_plainly_and_bad_input_is_refused():
    out = bootstrap.paired_bootstrap({"dice": [0.8, 0.9, 0.7]}, ["a", "a", "b"])
    assert not out["enough"] and "too few" in out["note"] and out["subjects"] == 2
    assert out["metrics"]["dice"] == {"value": pytest.approx(0.8), "low": None, "high": None}
    with pytest.raises(ValidationError, match="2 values for 3 examples"):
        bootstrap.paired_bootstrap({"dice": [0.1, 0.2]}, ["a", "b", "c"])
    with pytest.raises(ValidationError, match="infinite"):
        bootstrap.paired_bootstrap({"dice": [np.inf] * 12}, range(12))
    with pytest.raises(ValidationError, match="method"):
        bootstrap.paired_bootstrap({"dice": [0.5] * 12}, range(12), method="normal")
    with pytest.raises(ValidationError, match="level"):
        bootstrap.paired_bootstrap({"dice": [0.5] * 12}, range(12), level=95)
    assert bootstrap.paired_bootstrap({}, [])["note"] == "no test examples"
