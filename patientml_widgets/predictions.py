"""Predictions: trained runs loaded once per session, predictions stored per run and example,
and the queries built on them ("most uncertain first", "prediction disagrees").

Used by the kernel (``Project.predict`` and its queries) and by the training worker, which
predicts every example of a model after deploying a run, so that the queries are instant.
Torch is imported only when a run is loaded.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

import numpy as np

from . import imaging
from .errors import NotFoundError, PatientMLError, StoreError, ValidationError, repair_hint
from .model_code import load_model_code
from .records import Model, Prediction
from .session import ExampleRef, ModelRef, Session
from .store import now

__all__ = ["DISAGREEMENT_DICE", "Predictions"]

#: a mask prediction "disagrees" with the submitted label below this foreground Dice
DISAGREEMENT_DICE = 0.8
#: predictions a batch stores per commit (at least), and the most commits predicting a whole model takes:
#: each commit rewrites the prediction shards it touches, so a large model commits in about 20 steps
BATCH = 64
MAX_COMMITS = 20
#: a batch also commits once its encoded masks reach this many bytes (memory stays bounded)
BATCH_BYTES = 64 * 2**20


class Predictions:
    """The runs of one session loaded for prediction (each once), and stored predictions."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._predictors: dict[str, Any] = {}
        self._computed: dict[str, dict[str, dict[str, Any]]] = {}  # run -> example -> prediction, not stored
        #: (run, example, label content) -> disagrees; by content, not version: a batch that is undone
        #: gives its label version out again, to other content
        self._agreement: dict[tuple[str, str, str | None, tuple[int, ...]], bool] = {}

    def predictor(self, run_id: str) -> Any:
        """The run's network (a ``training.predictor.Predictor``), loaded once (``weights_only``)."""
        if run_id not in self._predictors:
            from .training.predictor import Predictor
            from .training.spec import TrainSpec

            record = self.session.run_record(run_id)
            if not record.get("artifact_ref"):
                raise ValidationError(f"run {record['slug']} has no trained weights ({record['status']})")
            try:
                spec = TrainSpec.from_dict(record["spec"])
                factory = None
                if spec.architecture.startswith("code:"):
                    factory = load_model_code(self.session, spec.architecture[5:], "predict with it")[0]
                weights = self.session.blob(record["artifact_ref"])
                self._predictors[run_id] = Predictor(spec, weights, record["classes"], factory)
            except PatientMLError:
                raise
            except Exception as e:  # a damaged or crafted run record or weights file: never a crash
                raise StoreError(
                    f"run {record.get('slug', run_id)} cannot be loaded for prediction ({type(e).__name__}: {e}); "
                    f"retrain the model, or check the project: {repair_hint(self.session.path)}"
                ) from None
        return self._predictors[run_id]

    def champion(self, model: ModelRef) -> tuple[dict[str, Any], str]:
        """The model's record and its deployed run's id (ValidationError if none is deployed)."""
        record = self.session.model_record(model)
        run_id = record.get("champion_run_id")
        if not run_id:
            raise ValidationError(f"model {record['name']!r} has no deployed run yet; train and deploy one")
        return record, run_id

    def predict(self, model: ModelRef, item: ExampleRef | np.ndarray) -> Prediction:
        """The deployed run's prediction for an example (stored per example and run) or an array.

        A run trained on volumes predicts volume examples (their whole (Z, Y, X) mask, slice by slice);
        a run trained on 2-D images predicts 2-D images.
        """
        record, run_id = self.champion(model)
        if isinstance(item, np.ndarray):
            if self._trained_on_volumes(run_id):
                raise ValidationError(
                    "this model's run was trained on volumes, whose spacing matters: add the volume with "
                    "add_volume and predict the example (or use the run's Predictor.predict_volume(array, spacing))"
                )
            image = imaging.read_image(item, max_pixels=self.session.max_image_pixels)
            return self._as_prediction(self._compute(record, run_id, None, image))
        ex = self.session.example_record(item)
        if ex["model_id"] != record["id"]:
            raise ValidationError(f"example {ex['id']} belongs to another model")
        stored = self.session.prediction_record(run_id, ex["id"])
        if stored is not None:
            return self._as_prediction(stored)
        self._check_kind(run_id, ex)
        entry = self._compute(record, run_id, ex["id"], self.session.image(ex["id"]))
        self.session.store_predictions([entry])
        return self._as_prediction(entry)

    def _check_kind(self, run_id: str, ex: dict[str, Any]) -> None:
        """ValidationError unless the run predicts examples of this kind (volume or 2-D image)."""
        volume, trained = ex.get("depth") is not None, self._trained_on_volumes(run_id)
        if volume != trained:
            what, other = ("a volume", "2-D images") if volume else ("a 2-D image", "volumes")
            raise ValidationError(
                f"example {ex['id']} is {what}; the deployed run was trained on {other} and predicts those only"
            )

    def _predictable(self, run_id: str, ids: Iterable[str]) -> list[str]:
        """Those of ``ids`` of the kind the run predicts (volumes for a run trained on volumes, else 2-D images)."""
        volumes = self._trained_on_volumes(run_id)
        return [i for i in ids if (self.session.example_record(i).get("depth") is not None) == volumes]

    def _trained_on_volumes(self, run_id: str) -> bool:
        """From the run's record (the network is not loaded for it)."""
        return bool((self.session.run_record(run_id).get("spec") or {}).get("volume_mode"))

    def predict_all(self, model: ModelRef, run_id: str, *, ids: Iterable[str] | None = None, progress=None) -> int:
        """Predict and store every example of the model (or those of ``ids``) that has no stored prediction of
        ``run_id``; returns how many were stored. Examples of the other kind (2-D images for a run trained on
        volumes, and the other way round) are left out.
        """
        record = self.session.model_record(model)
        have = self.session.prediction_records(run_id)
        wanted = None if ids is None else set(ids)
        todo = [i for i in self.session.example_ids(record["id"]) if i not in have and (wanted is None or i in wanted)]
        todo = self._predictable(run_id, todo)
        per_commit = max(BATCH, -(-len(todo) // MAX_COMMITS))
        done, entries, pending = 0, [], 0
        for number, example_id in enumerate(todo, start=1):
            try:
                image = self.session.image(example_id)
            except NotFoundError:  # deleted since the list was read (labeling goes on meanwhile)
                continue
            entry = self._compute(record, run_id, example_id, image)
            if entry.get("mask") is not None:  # held encoded until the commit
                mask = entry.pop("mask")
                if mask.ndim == 3:  # a volume's, stored like its label (the slices holding a class too)
                    entry["mask_tif"] = imaging.encode_volume(mask)
                    entry["slices"] = np.flatnonzero(mask.reshape(len(mask), -1).any(axis=1)).tolist()
                else:
                    entry["mask_png"] = imaging.encode_mask_png(mask)
                pending += len(entry.get("mask_tif") or entry["mask_png"])
            entries.append(entry)
            if len(entries) >= per_commit or pending >= BATCH_BYTES or number == len(todo):
                done += self.session.store_predictions(entries)
                entries, pending = [], 0
                if progress is not None:
                    progress(number, len(todo))
        return done + self.session.store_predictions(entries)

    def _compute(self, model: dict[str, Any], run_id: str, example_id: str | None, image) -> dict[str, Any]:
        """A prediction entry. A volume (a run trained on volumes): its (Z, Y, X) mask predicted slice by slice
        with the example's spacing, the uncertainty (1 - the mean top probability) and each class's mean
        probability over its voxels; or its classes' probabilities, the mean of its central slices'.
        """
        predictor = self.predictor(run_id)
        indices = predictor.class_indices
        entry: dict[str, Any] = {"run_id": run_id, "example_id": example_id, "model_id": model["id"], "created": now()}
        if predictor.volumes:
            spacing = self.session.example_record(example_id).get("spacing") if example_id else None
            out = predictor.predict_volume(image, spacing or (1.0, 1.0, 1.0))
            entry["uncertainty"] = out.uncertainty
            entry["probabilities"] = [float(p) for p in out.mean_proba]
            if out.positions is not None:  # segmentation; a classification is its probabilities
                entry["mask"] = np.asarray(indices, dtype=np.uint8)[out.positions]
            return entry
        proba = predictor.predict(image)
        if model["problem_type"] == "segmentation":
            entry["uncertainty"] = float(1 - proba.max(axis=0).mean())
            entry["probabilities"] = [float(p) for p in proba.reshape(len(indices), -1).mean(axis=1)]
            entry["mask"] = np.asarray(indices, dtype=np.uint8)[proba.argmax(axis=0)]
        else:
            p = proba.astype(float)
            entry["uncertainty"] = float(np.mean(1 - np.abs(2 * p - 1))) if model["multi_label"] else float(1 - p.max())
            entry["probabilities"] = [float(v) for v in p]
        return entry

    def _as_prediction(self, entry: dict[str, Any]) -> Prediction:
        run = self.session.run_record(entry["run_id"])
        names = [c["name"] for c in run["classes"]]
        chosen = (run.get("thresholds") or {}).get("classes")
        thresholds = (
            {n: float(v) for n, v in chosen.items() if n in names and _probability(v)}
            if isinstance(chosen, dict)
            else {}
        )
        mask = entry.get("mask")
        if mask is None and entry.get("mask_ref"):
            mask = self.session.mask_blob(entry["mask_ref"])
        return Prediction(
            run_id=entry["run_id"],
            example_id=entry.get("example_id"),
            probabilities=dict(zip(names, entry["probabilities"], strict=True)),
            uncertainty=entry["uncertainty"],
            mask=mask,
            thresholds=thresholds,
            multi_label=bool(self.session.model_record(run["model_id"]).get("multi_label")),
        )

    # -- queries -----------------------------------------------------------------------

    def uncertainty_order(self, model: ModelRef, ids: list[str]) -> list[str]:
        """``ids`` with the deployed run's least sure first, and every tenth place drawn at random
        from the surer half (so the queue does not only ever show one kind of case).
        Predicts what has no stored prediction (kept in memory, not stored: a query never writes).
        """
        record, run_id = self.champion(model)
        stored = self._known(record, run_id, self._predictable(run_id, ids))
        scored = sorted(ids, key=lambda i: -stored[i]["uncertainty"] if i in stored else 1.0)  # the other kind last
        rng = random.Random(len(ids))
        share = max(1, len(scored) // 10) if scored else 0
        picks = rng.sample(scored[len(scored) // 2 :], min(share, len(scored) // 2))
        chosen = set(picks)
        rest = [i for i in scored if i not in chosen]
        for k, pick in enumerate(picks):
            rest.insert(min(len(rest), 10 * k + 9), pick)
        return rest

    def _known(self, model: dict[str, Any], run_id: str, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The predictions of ``ids``: stored ones, else computed here and kept in memory (a query
        never writes; the worker stores every example's prediction after deploying a run).
        """
        known = {**self._computed.get(run_id, {}), **self.session.prediction_records(run_id)}
        computed = self._computed.setdefault(run_id, {})
        for example_id in ids:
            if example_id not in known:
                known[example_id] = computed[example_id] = self._compute(
                    model, run_id, example_id, self.session.image(example_id)
                )
        return known

    def disagreeing(self, model: ModelRef, ids: list[str]) -> list[str]:
        """Those of ``ids`` (labeled examples) whose deployed-run prediction differs from the label:
        other classes, or a mask whose foreground Dice with the label is below ``DISAGREEMENT_DICE``
        (a volume's over all its voxels).
        """
        record, run_id = self.champion(model)
        ids = self._predictable(run_id, ids)
        stored = self._known(record, run_id, ids)
        view = Model.from_record(record)
        out = []
        for example_id in ids:
            label = self.session.label_record(example_id)
            if label is None or label["status"] == "deleted":
                continue
            key = (run_id, example_id, label.get("mask_ref"), tuple(label["classes"]))
            if key not in self._agreement:
                self._agreement[key] = self._disagrees(view, stored[example_id], label)
            if self._agreement[key]:
                out.append(example_id)
        return out

    def _disagrees(self, model: Model, prediction: dict[str, Any], label: dict[str, Any]) -> bool:
        if model.problem_type != "segmentation":
            names = {c.index: c.name for c in model.classes}
            predicted = self._as_prediction(prediction).classes
            return sorted(predicted) != sorted(names.get(i, str(i)) for i in label["classes"])
        truth = self.session.mask_blob(label["mask_ref"])
        guess = (
            prediction["mask"] if prediction.get("mask") is not None else self.session.mask_blob(prediction["mask_ref"])
        )
        fg_truth, fg_guess = truth > 0, guess > 0  # a volume's: over every voxel (3-D Dice)
        overlap = 2 * np.logical_and(truth == guess, fg_truth).sum()
        total = fg_truth.sum() + fg_guess.sum()
        return bool(total > 0 and overlap / total < DISAGREEMENT_DICE)


def _probability(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1
