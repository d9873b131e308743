import numpy as np

import patientml_widgets as pml
from patientml_widgets import demo as demo_module


def test_demo_has_both_problem_types_and_every_status(demo):
    models = {m.name: m for m in demo.models()}
    seg, cls = models["Skin lesion segmentation"], models["Lesion type"]
    assert seg.problem_type == "segmentation" and seg.class_names == ["background", "lesion", "margin"]
    assert cls.problem_type == "classification" and len(cls.classes) == 3
    for model in (seg, cls):
        counts = demo.status_counts(model)
        assert sum(counts.values()) >= 200
        assert all(n > 0 for n in counts.values()), counts
    assert len(demo.subjects()) >= 10
    snap = demo.snapshot(seg)
    assert all(len(snap[s]) > 5 for s in ("train", "val", "test"))


def test_demo_labels_match_the_ground_truth(demo):
    seg = demo.model("Skin lesion segmentation")
    cls = demo.model("Lesion type")
    for ex in demo.examples(seg, status="labeled", limit=10):
        image, mask, _ = demo_module.lesion_sample(ex.source["index"])
        np.testing.assert_array_equal(demo.image(ex), image)
        np.testing.assert_array_equal(demo.mask(ex), mask)
        assert set(np.unique(mask)) == {0, 1, 2}
    for ex in demo.examples(cls, status="labeled", limit=10):
        _, _, kind = demo_module.lesion_sample(ex.source["index"])
        assert demo.label(ex).classes == (kind,)
    kinds = [demo_module.lesion_sample(i)[2] for i in range(60)]
    assert sorted(set(kinds)) == [0, 1, 2]


def test_demo_is_deterministic_and_reused(tmp_path, demo_template):
    other = pml.Project.demo(tmp_path / "again")
    template = pml.Project.open(demo_template, create=False)

    def content(project):
        out = []
        for model in project.models():
            for ex in project.examples(model):
                label = project.label(ex)
                labeled = label and (label.status, label.mask_ref, label.classes)
                out.append((model.name, ex.source["index"], ex.subject_id, ex.split, ex.image_ref, labeled))
        return sorted(out, key=str)

    assert content(other) == content(template)
    # a second call opens the existing project instead of building it again
    ids = [m.id for m in other.models()]
    assert [m.id for m in pml.Project.demo(tmp_path / "again").models()] == ids
    assert [m.id for m in pml.Project.demo(tmp_path / "again", fresh=True).models()] != ids


def test_demo_default_location_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PATIENTML_DEMO_DIR", str(tmp_path / "here"))
    assert demo_module.default_demo_path() == tmp_path / "here"
    monkeypatch.delenv("PATIENTML_DEMO_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert demo_module.default_demo_path() == tmp_path / "cache" / "patientml-widgets" / "demo-v2"
