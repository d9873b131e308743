"""The SAM engine's plumbing, on a tiny randomly initialised SAM saved in Hugging Face format (no real weights:
the masks mean nothing, the shapes, caching, threading and refusals do).
"""

import json
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from patientml_widgets.errors import ValidationError
from patientml_widgets.interactive import Prompts, SamEngine, Scribble
from patientml_widgets.interactive.clicker import simulate
from patientml_widgets.interactive.sam import check_checkpoint, image_key, prompt_points

SIZE = 128  # the tiny model's input side: 8 x 8 patches of 16


def tiny_config():
    from transformers import SamConfig

    hidden = 32
    return SamConfig(
        vision_config=dict(
            hidden_size=hidden,
            num_hidden_layers=2,
            num_attention_heads=2,
            mlp_dim=64,
            image_size=SIZE,
            patch_size=16,
            output_channels=hidden,
            window_size=4,
            global_attn_indexes=[1],
            num_pos_feats=hidden // 2,
        ),
        prompt_encoder_config=dict(
            hidden_size=hidden, image_size=SIZE, patch_size=16, image_embedding_size=SIZE // 16, mask_input_channels=8
        ),
        mask_decoder_config=dict(hidden_size=hidden, num_attention_heads=2, mlp_dim=64, iou_head_hidden_dim=hidden),
        initializer_range=0.5,  # weights large enough that the maps are not all 0.5
    )


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory):
    pytest.importorskip("transformers")
    import torch
    from transformers import SamModel

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("ckpt") / "sam-tiny"
    SamModel(tiny_config()).save_pretrained(folder)
    assert (folder / "model.safetensors").is_file()
    return folder


@pytest.fixture(autouse=True)
def one_torch_thread():
    """The tiny model is all overhead: one thread is as fast, and a busy machine does not slow it 100-fold
    (threads waiting at every operation for a core).
    """
    try:
        import torch
    except ImportError:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def engine(checkpoint):
    return SamEngine(checkpoint)


@pytest.fixture
def spy(monkeypatch):
    """Counts the image encoder's and the decoder's calls (and the decoder's arguments)."""
    from patientml_widgets.training.sam import SamNet

    calls = {"embed": 0, "decode": []}
    embed, decode = SamNet.embed, SamNet.decode

    def counting_embed(self, pixels):
        calls["embed"] += 1
        return embed(self, pixels)

    def recording_decode(self, embedding, **kwargs):
        calls["decode"].append(kwargs)
        return decode(self, embedding, **kwargs)

    monkeypatch.setattr(SamNet, "embed", counting_embed)
    monkeypatch.setattr(SamNet, "decode", recording_decode)
    return calls


def disk(h, w, r=12, cy=None, cx=None):
    yy, xx = np.ogrid[:h, :w]
    return (yy - (cy if cy is not None else h // 2)) ** 2 + (xx - (cx if cx is not None else w // 2)) ** 2 <= r * r


def check_map(m, shape):
    assert m.dtype == np.float32 and m.shape == shape
    assert np.isfinite(m).all() and m.min() >= 0.0 and m.max() <= 1.0


# -- images and prompts ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, window",
    [
        (lambda: (disk(60, 90) * 200 + 20).astype(np.uint8), None),
        (lambda: (disk(60, 90) * 40000 + 1000).astype(np.uint16), None),
        (lambda: np.where(disk(60, 90), 60, -1000).astype(np.int16), {"center": 40, "width": 400}),  # CT in HU
        (lambda: np.where(disk(60, 90), 60, -1000).astype(np.int16), {}),  # automatic window
        (lambda: np.stack([disk(60, 90) * 255, np.zeros((60, 90)), disk(60, 90) * 99], -1).astype(np.uint8), None),
        (lambda: np.dstack([disk(60, 90) * 255] * 3 + [np.full((60, 90), 255)]).astype(np.uint8), None),  # RGBA
        (lambda: (disk(60, 90) * 255).astype(np.uint8)[:, :, None], None),  # (H, W, 1)
        (lambda: np.where(disk(60, 90), 1.0, np.nan).astype(np.float32), None),  # float with NaN
    ],
    ids=["uint8", "uint16", "int16-hu-window", "int16-auto", "rgb", "rgba", "hw1", "float-nan"],
)
def test_a_map_at_the_images_size_for_every_kind_of_image(engine, make, window):
    image = make()
    m = engine.propose(image, Prompts(((45.0, 30.0, True),)), window=window)
    check_map(m, (60, 90))


def test_clicks_a_box_and_scribbles_each_give_a_map(engine, spy):
    image = (disk(70, 100) * 255).astype(np.uint8)
    cases = [
        Prompts(((50.0, 35.0, True),)),
        Prompts(((50.0, 35.0, True), (5.0, 5.0, False))),
        Prompts(box=(30.0, 20.0, 70.0, 50.0)),
        Prompts(((50.0, 35.0, True),), box=(30.0, 20.0, 70.0, 50.0)),
        Prompts(scribbles=(Scribble(True, ((40.0, 35.0), (60.0, 35.0), (60.0, 40.0))),)),
        Prompts(scribbles=(Scribble(True, ((50.0, 35.0),)), Scribble(False, ((2.0, 2.0), (20.0, 2.0))))),
    ]
    for prompts in cases:
        check_map(engine.propose(image, prompts), (70, 100))
    assert spy["embed"] == 1  # one image, one embedding
    # SAM's advice: three masks for a single click (the best kept), one for anything more
    assert [d["multimask"] for d in spy["decode"]] == [True, False, False, False, False, False]
    assert spy["decode"][2]["points"] is None and spy["decode"][2]["box"] is not None
    assert len(spy["decode"][4]["points"]) == 5  # points sampled along the scribble
    assert list(spy["decode"][5]["labels"]) == [1, 0, 0, 0, 0, 0]


def test_no_prompts_give_zeros_without_running_the_model(engine, spy):
    m = engine.propose(np.ones((20, 30), np.uint8), Prompts())
    assert m.dtype == np.float32 and m.shape == (20, 30) and not m.any()
    assert spy["embed"] == 0 and engine.embeddings_computed == 0


def test_prompts_are_scaled_to_the_models_frame(engine, spy):
    image = np.zeros((100, 200), np.uint8)  # long side 200 -> 128: the image fills 128 x 64 of the square
    engine.propose(image, Prompts(((99.5, 49.5, True),), box=(0.0, 0.0, 199.0, 99.0)))
    call = spy["decode"][0]
    assert call["resized"] == (64, 128) and call["shape"] == (100, 200)
    np.testing.assert_allclose(call["points"][0], [100 * 0.64 - 0.5, 50 * 0.64 - 0.5], atol=1e-5)
    corners = [0.5 * 0.64 - 0.5, 0.5 * 0.64 - 0.5, 199.5 * 0.64 - 0.5, 99.5 * 0.64 - 0.5]
    np.testing.assert_allclose(call["box"], corners, atol=1e-5)
    pixels, resized = engine.pixels(image, None, SIZE)
    assert pixels.shape == (3, SIZE, SIZE) and resized == (64, 128)
    assert np.all(pixels[:, 64:, :] == 0)  # padded below the image


def test_pixels_are_normalised_like_sams_processor(engine):
    image = np.full((32, 32), 255, np.uint8)
    pixels, _ = engine.pixels(image, None, SIZE)
    np.testing.assert_allclose(pixels[:, 0, 0], [(1 - 0.485) / 0.229, (1 - 0.456) / 0.224, (1 - 0.406) / 0.225], 1e-5)


def test_scribble_points_and_the_cap():
    one = Prompts(scribbles=(Scribble(True, ((0.0, 0.0), (10.0, 0.0), (10.0, 10.0))),))
    assert [(round(x, 3), round(y, 3)) for x, y, _ in prompt_points(one)] == [
        (0, 0), (5, 0), (10, 0), (10, 5), (10, 10)
    ]  # fmt: skip
    many = Prompts(tuple((float(i), 0.0, True) for i in range(100)))
    kept = prompt_points(many)
    assert len(kept) == 64 and kept[-1][0] == 99.0  # the most recent clicks


# -- the embedding cache ---------------------------------------------------------------------


def test_the_embedding_is_computed_once_for_many_clicks(engine, spy):
    target = disk(64, 64, r=14)
    image = (target * 180 + 30).astype(np.uint8)
    trial = simulate(lambda p: engine.propose(image, p), target, clicks=12)
    assert len(trial.dices) >= 1
    assert spy["embed"] == 1 and engine.embeddings_computed == 1
    assert len(spy["decode"]) == len(trial.dices)
    engine.propose(image.copy(), Prompts(((3.0, 3.0, True),)))  # the same bytes in another array
    assert spy["embed"] == 1
    other = image.copy()
    other[0, 0] += 1
    engine.propose(other, Prompts(((3.0, 3.0, True),)))  # one pixel differs: a new image
    assert spy["embed"] == 2
    engine.propose(other, Prompts(((3.0, 3.0, True),)), window={"center": 100, "width": 50})  # another window
    assert spy["embed"] == 3


def test_the_cache_is_bounded_least_recently_used_first(checkpoint, spy):
    engine = SamEngine(checkpoint, cache_size=2)
    images = [np.full((16, 16), v, np.uint8) for v in (10, 20, 30)]
    click = Prompts(((8.0, 8.0, True),))
    engine.propose(images[0], click)
    engine.propose(images[1], click)
    engine.propose(images[0], click)  # 0 is now the most recent
    engine.propose(images[2], click)  # evicts 1
    assert engine.cached == 2 and spy["embed"] == 3
    engine.propose(images[0], click)
    assert spy["embed"] == 3
    engine.propose(images[1], click)
    assert spy["embed"] == 4
    engine.clear_cache()
    assert engine.cached == 0


def test_the_key_covers_bytes_shape_dtype_and_window():
    a = np.arange(12, dtype=np.uint8).reshape(3, 4)
    keys = {
        image_key(a, None),
        image_key(a.reshape(4, 3), None),
        image_key(a.astype(np.int16), None),
        image_key(a, {"center": 5, "width": 10}),
    }
    assert len(keys) == 4
    assert image_key(a, None) == image_key(a, {}) == image_key(np.asfortranarray(a), None)


def test_a_propose_waits_for_the_preparation_in_flight(engine, monkeypatch):
    from patientml_widgets.training.sam import SamNet

    engine.load()
    started, release = threading.Event(), threading.Event()
    calls = []
    embed = SamNet.embed

    def slow_embed(self, pixels):
        calls.append(threading.current_thread().name)
        started.set()
        release.wait(10)
        return embed(self, pixels)

    monkeypatch.setattr(SamNet, "embed", slow_embed)
    image = (disk(40, 40) * 255).astype(np.uint8)
    threads = [threading.Thread(target=engine.prepare, args=(image,), name=f"prepare-{i}") for i in range(2)]
    threads[0].start()
    assert started.wait(10)
    threads[1].start()  # a second preparation of the same image waits too
    results = []
    proposer = threading.Thread(target=lambda: results.append(engine.propose(image, Prompts(((20.0, 20.0, True),)))))
    proposer.start()
    time.sleep(0.2)
    assert not results  # still waiting for the embedding
    release.set()
    for t in [*threads, proposer]:
        t.join(10)
    assert calls == ["prepare-0"] and engine.embeddings_computed == 1
    check_map(results[0], (40, 40))


def test_a_failed_preparation_reaches_the_waiters_and_is_not_cached(engine, monkeypatch):
    from patientml_widgets.training.sam import SamNet

    engine.load()
    embed = SamNet.embed

    def broken(self, pixels):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(SamNet, "embed", broken)
    image = np.zeros((8, 8), np.uint8)
    with pytest.raises(RuntimeError, match="out of memory"):
        engine.prepare(image)
    monkeypatch.setattr(SamNet, "embed", embed)
    engine.prepare(image)
    assert engine.cached == 1


def test_refining_clicks_can_feed_the_previous_mask(checkpoint, spy):
    engine = SamEngine(checkpoint, refine_with_mask=True)
    image = (disk(50, 50) * 255).astype(np.uint8)
    p1 = Prompts(((25.0, 25.0, True),))
    p2 = p1.with_click(5.0, 5.0, False)
    engine.propose(image, p1)
    engine.propose(image, p2)
    engine.propose(image, Prompts(((5.0, 40.0, True),)))  # a new object: no mask carried over
    masks = [d["mask_input"] for d in spy["decode"]]
    assert masks[0] is None and masks[1] is not None and tuple(masks[1].shape) == (1, 1, 32, 32) and masks[2] is None
    assert SamEngine(checkpoint).refine_with_mask is False


# -- the checkpoint --------------------------------------------------------------------------


def test_the_engine_names_itself_after_the_folder(engine, checkpoint):
    assert engine.name == "sam" and engine.label == "SAM (sam-tiny)" and engine.preprocessing == "sam"
    assert not engine.loaded
    net = engine.load()
    assert engine.loaded and net.image_size == SIZE and net.mask_size == 32


def test_medsam_preprocessing(checkpoint, tmp_path):
    folder = tmp_path / "medsam-vit-tiny"
    shutil.copytree(checkpoint, folder)
    engine = SamEngine(folder)
    assert engine.preprocessing == "medsam"
    image = (disk(50, 100) * 200 + 20).astype(np.uint8)
    pixels, resized = engine.pixels(image, None, SIZE)
    assert resized == (SIZE, SIZE) and pixels.min() == 0.0 and pixels.max() == 1.0  # the square, [0, 1]
    check_map(engine.propose(image, Prompts(box=(30.0, 10.0, 70.0, 40.0))), (50, 100))
    assert SamEngine(folder, preprocessing="sam").preprocessing == "sam"
    with pytest.raises(ValidationError, match="preprocessing"):
        SamEngine(folder, preprocessing="clip")


def test_the_folders_preprocessor_config_is_honoured(checkpoint, tmp_path):
    folder = tmp_path / "custom"
    shutil.copytree(checkpoint, folder)
    (folder / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.5] * 3, "image_std": [0.5] * 3}))
    pixels, _ = SamEngine(folder).pixels(np.full((8, 8), 255, np.uint8), None, SIZE)
    np.testing.assert_allclose(pixels[:, 0, 0], [1.0, 1.0, 1.0], atol=1e-6)
    (folder / "preprocessor_config.json").write_text(json.dumps({"image_std": [0, 1, 1]}))
    with pytest.raises(ValidationError, match="image_std"):
        SamEngine(folder)


def test_loading_never_reaches_the_network(checkpoint, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"network: {args!r}")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    SamEngine(checkpoint).load()  # connect() is refused for every test by conftest


def broken_copy(checkpoint, tmp_path, name="broken"):
    folder = tmp_path / name
    shutil.copytree(checkpoint, folder)
    return folder


def test_refusals_are_clear(checkpoint, tmp_path):
    with pytest.raises(ValidationError, match="does not exist"):
        SamEngine(tmp_path / "nowhere")
    (tmp_path / "file.safetensors").write_bytes(b"x")
    with pytest.raises(ValidationError, match="is a file"):
        SamEngine(tmp_path / "file.safetensors")

    no_config = broken_copy(checkpoint, tmp_path, "no-config")
    (no_config / "config.json").unlink()
    with pytest.raises(ValidationError, match=r"no config\.json"):
        SamEngine(no_config)

    bad_json = broken_copy(checkpoint, tmp_path, "bad-json")
    (bad_json / "config.json").write_text("{not json")
    with pytest.raises(ValidationError, match="cannot read"):
        SamEngine(bad_json)

    for model_type, says in [("vit", "'vit'"), ("sam2", "SAM 2"), (None, "None")]:
        other = broken_copy(checkpoint, tmp_path, f"other-{model_type}")
        config = json.loads((other / "config.json").read_text())
        config["model_type"] = model_type
        (other / "config.json").write_text(json.dumps(config))
        with pytest.raises(ValidationError, match=f"{says}.*not a SAM model"):
            SamEngine(other)

    pickled = broken_copy(checkpoint, tmp_path, "pickled")
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    with pytest.raises(ValidationError, match=r"pytorch_model\.bin but no model\.safetensors.*[Cc]onvert"):
        SamEngine(pickled)

    empty = broken_copy(checkpoint, tmp_path, "no-weights")
    (empty / "model.safetensors").unlink()
    with pytest.raises(ValidationError, match=r"no model\.safetensors"):
        SamEngine(empty)


@pytest.mark.parametrize("damage", ["truncated", "header", "empty", "appended"])
def test_a_damaged_safetensors_file_is_refused(checkpoint, tmp_path, damage):
    folder = broken_copy(checkpoint, tmp_path)
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    damaged = {
        "truncated": data[: len(data) // 2],
        "header": b"\xff" * 64 + data[64:],
        "empty": b"",
        "appended": data + b"\0" * 10,
    }[damage]
    weights.write_bytes(damaged)
    with pytest.raises(ValidationError, match="not a readable safetensors file"):
        SamEngine(folder)


def test_weights_that_do_not_fit_the_config_are_refused_at_load(checkpoint, tmp_path):
    from safetensors.numpy import load_file, save_file

    partial = broken_copy(checkpoint, tmp_path, "partial")
    tensors = load_file(partial / "model.safetensors")
    kept = {k: v for k, v in tensors.items() if not k.startswith("mask_decoder.")}
    save_file(kept, partial / "model.safetensors", metadata={"format": "pt"})
    engine = SamEngine(partial)  # the file itself is sound
    with pytest.raises(ValidationError, match=r"do not fit its config\.json.*missing"):
        engine.propose(np.zeros((8, 8), np.uint8), Prompts(((4.0, 4.0, True),)))

    reshaped = broken_copy(checkpoint, tmp_path, "reshaped")
    config = json.loads((reshaped / "config.json").read_text())
    config["vision_config"]["mlp_dim"] = 48
    (reshaped / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValidationError, match="reshaped"):
        SamEngine(reshaped).load()


def test_sharded_weights_are_checked_shard_by_shard(checkpoint, tmp_path):
    folder = broken_copy(checkpoint, tmp_path, "sharded")
    from safetensors import safe_open

    shard = folder / "model-00001-of-00001.safetensors"
    (folder / "model.safetensors").rename(shard)
    with safe_open(shard, "np") as f:
        weight_map = {k: shard.name for k in f.keys()}  # noqa: SIM118 (a safetensors handle, not a dict)
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    check_map(SamEngine(folder).propose(np.zeros((8, 8), np.uint8), Prompts(((4.0, 4.0, True),))), (8, 8))
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "../elsewhere.safetensors"}}))
    with pytest.raises(ValidationError, match=r"not a \.safetensors file in the folder"):
        SamEngine(folder)


def test_check_checkpoint_reports_what_it_found(checkpoint):
    found = check_checkpoint(checkpoint)
    assert found.folder == checkpoint.resolve() and found.config["model_type"] == "sam"
    assert [p.name for p in found.weights] == ["model.safetensors"]


# -- without transformers --------------------------------------------------------------------


def test_the_package_imports_and_the_other_engines_work_without_transformers(tmp_path):
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["transformers"] = None  # as if it were not installed
        sys.modules["safetensors"] = None
        import numpy as np
        import patientml_widgets
        from patientml_widgets import interactive
        from patientml_widgets.errors import ValidationError
        from patientml_widgets.interactive import Engine, Prompts, SamEngine
        from patientml_widgets.interactive.clicker import simulate

        try:
            SamEngine({str(tmp_path)!r})
        except ValidationError as e:
            assert 'pip install "patientml-widgets[sam]"' in str(e), e
        else:
            raise AssertionError("no error without transformers")
        image = np.zeros((32, 32), np.uint8)
        image[8:24, 8:24] = 200
        tried = []
        for name in interactive.__all__:
            kind = getattr(interactive, name)
            if isinstance(kind, type) and issubclass(kind, Engine) and kind not in (Engine, SamEngine):
                try:
                    engine = kind()
                except TypeError:
                    continue  # an engine that needs arguments
                m = engine.propose(image, Prompts(((16.0, 16.0, True),)))
                assert m.shape == (32, 32) and m.dtype == np.float32, name
                simulate(lambda p: engine.propose(image, p), image > 0, clicks=3)
                tried.append(name)
        assert "transformers" not in sys.modules or sys.modules["transformers"] is None
        print("ok", tried)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


def test_importing_the_engine_imports_neither_torch_nor_transformers():
    script = (
        "import sys; import patientml_widgets.interactive as i; i.SamEngine; "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, sorted(sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
