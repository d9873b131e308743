"""Agreement and consensus, checked against scikit-learn and statsmodels on fixed and random cases."""

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score, f1_score, jaccard_score

import patientml_widgets as pml
from patientml_widgets import agreement

inter_rater = pytest.importorskip("statsmodels.stats.inter_rater")


@pytest.mark.parametrize("seed", range(6))
def test_cohens_kappa_equals_scikit_learns(seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 4, 60)
    b = np.where(rng.random(60) < 0.6, a, rng.integers(0, 4, 60))
    assert agreement.cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b), abs=1e-12)
    assert agreement.cohen_kappa([1, 0, 1, 1], [1, 0, 0, 1]) == pytest.approx(
        cohen_kappa_score([1, 0, 1, 1], [1, 0, 0, 1])
    )
    assert agreement.cohen_kappa([2, 2, 2], [2, 2, 2]) == 1.0
    with pytest.raises(pml.ValidationError):
        agreement.cohen_kappa([1, 2], [1])


@pytest.mark.parametrize(("seed", "readers"), [(0, 3), (1, 3), (2, 4), (3, 5), (4, 2)])
def test_fleiss_kappa_equals_statsmodels(seed, readers):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 3, 80)
    ratings = np.stack([np.where(rng.random(80) < 0.7, truth, rng.integers(0, 3, 80)) for _ in range(readers)], 1)
    table, _ = inter_rater.aggregate_raters(ratings)
    assert agreement.fleiss_kappa(ratings) == pytest.approx(inter_rater.fleiss_kappa(table), abs=1e-12)
    with pytest.raises(pml.ValidationError):
        agreement.fleiss_kappa(np.zeros((3, 1)))


def test_majority_votes_and_ties():
    assert agreement.majority_class([2, 2, 1]) == 2
    assert agreement.majority_class([2, 1]) is None and agreement.majority_class([3, 1, 2]) is None
    a = np.array([[0, 1, 2, 1]])
    b = np.array([[0, 1, 1, 2]])
    c = np.array([[1, 2, 1, 0]])
    consensus, tied = agreement.majority_mask([a, b, c])
    assert consensus.tolist() == [[0, 1, 1, 0]] and tied.tolist() == [[False, False, False, True]]
    d = np.array([[1, 2, 2, 2]])
    four, tied4 = agreement.majority_mask([a, b, c, d])  # the general path
    assert four.tolist() == [[0, 1, 1, 2]] and tied4.tolist() == [[True, True, True, False]]
    with pytest.raises(pml.ValidationError, match="differ in shape"):
        agreement.majority_mask([a, np.zeros((2, 2))])


@pytest.mark.parametrize("seed", range(4))
def test_mask_dice_and_iou_equal_scikit_learns_macro_scores(seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 3, (20, 24))
    b = np.where(rng.random(a.shape) < 0.8, a, rng.integers(0, 3, a.shape))
    got = agreement.mask_agreement(a, b)
    assert got["dice"] == pytest.approx(f1_score(a.ravel(), b.ravel(), labels=[1, 2], average="macro"))
    assert got["iou"] == pytest.approx(jaccard_score(a.ravel(), b.ravel(), labels=[1, 2], average="macro"))
    assert agreement.mask_agreement(np.zeros((3, 3)), np.zeros((3, 3))) == {"dice": 1.0, "iou": 1.0}
    pairs = agreement.pairwise_mask_agreement([a, b, a])
    assert set(pairs) == {(0, 1), (0, 2), (1, 2)} and pairs[(0, 2)] == {"dice": 1.0, "iou": 1.0}


def test_staple_trusts_the_readers_that_agree_with_the_rest():
    truth = np.zeros((64, 64), bool)
    truth[16:48, 12:40] = True
    assert np.array_equal(agreement.staple([truth, truth]) >= 0.5, truth)  # unanimous
    rng = np.random.default_rng(0)
    careful = [truth ^ (rng.random(truth.shape) < 0.02) for _ in range(2)]
    careless = [truth ^ (rng.random(truth.shape) < 0.35) for _ in range(3)]
    readers = careful + careless
    votes, _ = agreement.majority_mask([r.astype(np.uint8) for r in readers])
    proba = agreement.staple(readers)
    assert proba.shape == truth.shape and proba.dtype == np.float32 and 0 <= proba.min() <= proba.max() <= 1

    def dice(x):
        return agreement.mask_agreement(truth.astype(np.uint8), x.astype(np.uint8))["dice"]

    assert dice(proba >= 0.5) > dice(votes) + 0.05  # the majority of five follows the three careless readers
    assert dice(proba >= 0.5) > 0.95
    assert np.array_equal(agreement.staple([np.zeros((4, 4))] * 3), np.zeros((4, 4), np.float32))
