"""Our numpy metrics against scikit-learn's."""

import numpy as np
import pytest
from sklearn import metrics as sk

import patientml_widgets as pml
from patientml_widgets.training import metrics
from patientml_widgets.training.search import sample_trials, validate_space


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_classification_metrics_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    k, n = 4, 200
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + np.eye(k)[y] * rng.uniform(0, 2)
    proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    pred = proba.argmax(1)
    m = metrics.classification_metrics(y, proba, loss=0.5)
    assert m["accuracy"] == pytest.approx(sk.accuracy_score(y, pred))
    assert m["balanced_accuracy"] == pytest.approx(sk.balanced_accuracy_score(y, pred))
    assert m["f1_macro"] == pytest.approx(sk.f1_score(y, pred, average="macro", labels=range(k), zero_division=0))
    assert m["precision"] == pytest.approx(sk.precision_score(y, pred, average=None, labels=range(k), zero_division=0))
    assert m["recall"] == pytest.approx(sk.recall_score(y, pred, average=None, labels=range(k), zero_division=0))
    assert m["auroc"] == pytest.approx(sk.roc_auc_score(y, proba, multi_class="ovr", average="macro"))
    assert m["confusion_matrix"] == sk.confusion_matrix(y, pred, labels=range(k)).tolist()
    assert m["loss"] == 0.5


def test_auroc_handles_ties_and_single_class():
    y = np.array([0, 0, 1, 1, 1, 0])
    s = np.array([0.1, 0.5, 0.5, 0.9, 0.5, 0.2])
    assert metrics.auroc(y, s) == pytest.approx(sk.roc_auc_score(y, s))
    assert metrics.auroc(np.ones(4), np.arange(4)) is None


def test_multilabel_metrics_match_sklearn():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, (150, 3))
    proba = np.clip(y * 0.6 + rng.uniform(0, 0.5, (150, 3)), 0, 1)
    pred = proba >= 0.5
    m = metrics.multilabel_metrics(y, proba)
    assert m["subset_accuracy"] == pytest.approx(sk.accuracy_score(y, pred))
    assert m["f1_macro"] == pytest.approx(sk.f1_score(y, pred, average="macro", zero_division=0))
    assert m["auroc"] == pytest.approx(sk.roc_auc_score(y, proba, average="macro"))


def test_segmentation_metrics_match_sklearn():
    rng = np.random.default_rng(4)
    truth = rng.integers(0, 3, (5, 16, 16))
    pred = np.where(rng.uniform(size=truth.shape) < 0.8, truth, rng.integers(0, 3, truth.shape))
    m = metrics.segmentation_metrics(truth, pred, 3)
    t, p = truth.ravel(), pred.ravel()
    assert m["dice"] == pytest.approx(sk.f1_score(t, p, average=None, labels=[0, 1, 2]))
    assert m["iou"] == pytest.approx(sk.jaccard_score(t, p, average=None, labels=[0, 1, 2]))
    assert m["pixel_accuracy"] == pytest.approx(sk.accuracy_score(t, p))
    assert m["dice_mean"] == pytest.approx(np.mean(m["dice"][1:]))
    # a class absent from truth and prediction is a perfect 1.0, not a 0
    assert metrics.segmentation_metrics(np.zeros((1, 4, 4)), np.zeros((1, 4, 4)), 3)["dice"] == [1.0, 1.0, 1.0]


def test_search_spaces_are_checked_and_sampled_deterministically():
    space = validate_space(
        {
            "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
            "base_channels": {"type": "categorical", "choices": [8, 16]},
            "epochs": {"type": "int", "low": 2, "high": 5},
        }
    )
    trials = sample_trials(space, 20, seed=1)
    assert trials == sample_trials(space, 20, seed=1) != sample_trials(space, 20, seed=2)
    assert all(1e-4 <= t["lr"] <= 1e-1 and t["base_channels"] in (8, 16) and 2 <= t["epochs"] <= 5 for t in trials)
    assert all(isinstance(t["epochs"], int) for t in trials)
    # a log scale spreads over decades
    assert sum(t["lr"] < 1e-2 for t in sample_trials(space, 200, seed=0)) > 100
    for bad in (
        {"lr": {"type": "float", "low": 1, "high": 0}},
        {"lr": {"type": "float", "low": 0, "high": 1, "log": True}},
        {"x": {"type": "categorical", "choices": []}},
        {"x": {"type": "normal"}},
        ["lr"],
    ):
        with pytest.raises(pml.ValidationError):
            validate_space(bad)
