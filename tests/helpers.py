import hashlib
from pathlib import Path

import numpy as np


def tree_digest(path: Path) -> dict[str, str]:
    """Every file of a project folder and a hash of its bytes (to prove nothing changed).

    ``.cache/`` is left out: it holds query columns derived from the shard files, which any read may add.
    """
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(Path(path).rglob("*"))
        if p.is_file() and p.name != ".lock" and ".cache" not in p.relative_to(path).parts
    }


def image(h=24, w=32, seed=0, dtype=np.uint8):
    rng = np.random.default_rng(seed)
    hi = 255 if dtype == np.uint8 else 4000
    return rng.integers(0, hi, (h, w)).astype(dtype)


def update_run_with_weights(project, run_id: str, weights: bytes, **fields) -> None:
    """Set a run's fields and its weights blob in one commit (a commit keeps no blob nothing refers to)."""
    project.session.store_artifact(run_id, weights, **fields)


def deployed_run(project, model) -> str:
    """A succeeded, deployed run of ``model`` with fake weights (stored predictions need none)."""
    run = project.create_run(model)
    classes = [{"index": c.index, "name": c.name, "color": c.color, "description": ""} for c in model.classes]
    update_run_with_weights(project, run.id, b"w", status="succeeded", classes=classes, spec={"objective": "x"})
    project.deploy(run.id)
    return run.id


def fuzz_examples(default: int) -> int:
    """Examples per generated (hypothesis) test: ``default`` keeps CI short; FUZZ_N=500 searches harder."""
    import os

    return int(os.environ.get("FUZZ_N", default))


class Browser:
    """Records what a widget sends and sends messages as its front end does (for LabelCanvas tests)."""

    def __init__(self, canvas):
        self.canvas = canvas
        self.received = []
        canvas.send = lambda content, buffers=None: self.received.append((content, buffers or []))

    def send(self, content, buffers=()):
        """Deliver a message; what the widget last sent back (its content), if anything."""
        self.canvas._handle_message(self.canvas, content, [memoryview(b) for b in buffers])
        return self.received[-1][0] if self.received else None

    def stroke(self, mask, seq=1):
        from patientml_widgets import imaging

        return self.send({"kind": "mask", "seq": seq, "reason": "stroke"}, [imaging.encode_mask_wire(mask)])

    def stroke_on(self, plane, index, x, y, patch, seq=1):
        """A volume stroke: ``patch`` at (x, y) of slice ``index`` of ``plane``."""
        from patientml_widgets import imaging

        region = [x, y, patch.shape[1], patch.shape[0]]
        content = {"kind": "mask", "seq": seq, "plane": plane, "index": index, "region": region}
        return self.send(content, [imaging.encode_mask_wire(patch)])


def as_user(project, user: str):
    """The same project folder opened by another person (another kernel)."""
    import patientml_widgets as pml

    return pml.Project.open(project.path, create=False, user=user)
