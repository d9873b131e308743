"""A SAM-family checkpoint run with Hugging Face transformers' ``SamModel`` (torch is imported here only).

The image encoder runs once per image (:meth:`SamNet.embed`); each prompt then runs only the prompt encoder
and the mask decoder (:meth:`SamNet.decode`). The checkpoint is a local folder in Hugging Face format
(``config.json`` + ``model.safetensors``), loaded with ``local_files_only=True`` and ``use_safetensors=True``:
nothing is downloaded and nothing is unpickled. The torch-free checks of the folder (and the engine around
this) are in :mod:`patientml_widgets.interactive.sam`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ValidationError

__all__ = ["Decoded", "SamNet", "load_sam"]


@dataclass
class Decoded:
    """One decoder call: the probability map at the image's size, the chosen mask's low-resolution logits
    (the decoder's mask input for a refining click) and the model's predicted IoU for it.
    """

    probabilities: np.ndarray
    low_res_logits: Any
    score: float


class SamNet:
    """A loaded ``SamModel`` in eval mode, float32, on the CPU."""

    def __init__(self, model: Any) -> None:
        self.model = model
        config = model.config
        self.image_size = int(config.vision_config.image_size)  #: the side of the square the encoder sees
        self.embedding_size = int(config.prompt_encoder_config.image_embedding_size)
        self.mask_size = 4 * self.embedding_size  #: the side of the decoder's low-resolution logits
        self.parameters = sum(int(p.numel()) for p in model.parameters())

    def embed(self, pixels: np.ndarray) -> Any:
        """The image embedding (a tensor (1, C, e, e)) of ``pixels``, float32 (3, S, S) already normalised."""
        x = torch.from_numpy(np.ascontiguousarray(pixels, np.float32))[None]
        with torch.inference_mode():
            return self.model.get_image_embeddings(x)

    def decode(
        self,
        embedding: Any,
        *,
        points: np.ndarray | None,
        labels: np.ndarray | None,
        box: np.ndarray | None,
        mask_input: Any | None,
        multimask: bool,
        resized: tuple[int, int],
        shape: tuple[int, int],
    ) -> Decoded:
        """Masks for prompts in the model's frame: ``points`` (N, 2) as (x, y) and ``labels`` (N,) 1 / 0,
        ``box`` (4,) as (x0, y0, x1, y1); ``mask_input`` the low-resolution logits of an earlier call.
        With ``multimask`` the decoder proposes three masks and the best-scoring one is kept. The logits are
        upsampled to the padded S x S frame, cropped to the ``resized`` (h, w) image there, resized to ``shape``
        (H, W) and passed through a sigmoid.
        """
        kwargs: dict[str, Any] = {}
        if points is not None and len(points):
            kwargs["input_points"] = torch.as_tensor(points, dtype=torch.float32).reshape(1, 1, -1, 2)
            kwargs["input_labels"] = torch.as_tensor(labels, dtype=torch.int64).reshape(1, 1, -1)
        if box is not None:
            kwargs["input_boxes"] = torch.as_tensor(box, dtype=torch.float32).reshape(1, 1, 4)
        if mask_input is not None:
            kwargs["input_masks"] = mask_input
        with torch.inference_mode():
            out = self.model(image_embeddings=embedding, multimask_output=multimask, **kwargs)
            masks, scores = out.pred_masks[0, 0], out.iou_scores[0, 0]  # (k, m, m), (k,)
            best = int(torch.argmax(scores)) if multimask else 0
            low = masks[best][None, None]  # (1, 1, m, m)
            size = self.image_size
            up = F.interpolate(low, (size, size), mode="bilinear", align_corners=False)
            up = up[..., : resized[0], : resized[1]]
            up = F.interpolate(up, (int(shape[0]), int(shape[1])), mode="bilinear", align_corners=False)
            probabilities = torch.sigmoid(up)[0, 0].numpy().astype(np.float32, copy=False)
        return Decoded(probabilities, low, float(scores[best]))


def load_sam(folder: Path) -> SamNet:
    """Load the checkpoint in ``folder`` (already checked by the caller) or say why it cannot be loaded."""
    try:
        from transformers import SamModel
    except ImportError as e:  # a transformers too old for SAM, or one that fails to import
        raise ValidationError(
            f'the SAM engine needs transformers with SAM: pip install "patientml-widgets[sam]" ({e})'
        ) from None
    import transformers

    # a half-precision checkpoint runs in float32 on the CPU (the argument was torch_dtype before transformers 4.56)
    major, minor = (int(v) if v.isdigit() else 0 for v in transformers.__version__.split(".")[:2])
    dtype: dict[str, Any] = {"dtype" if (major, minor) >= (4, 56) else "torch_dtype": torch.float32}
    try:
        loaded: Any = SamModel.from_pretrained(
            str(folder),
            local_files_only=True,  # a folder on disk: never the network
            use_safetensors=True,  # never a pickle
            output_loading_info=True,
            **dtype,
        )
    except Exception as e:  # damaged weights, shapes that do not fit the config, a config transformers refuses
        raise ValidationError(f"cannot load the SAM checkpoint in {folder}: {type(e).__name__}: {e}") from None
    model, info = loaded
    missing = sorted(info.get("missing_keys") or [])
    mismatched = sorted(str(k) for k in info.get("mismatched_keys") or [])
    if missing or mismatched:
        shown = ", ".join((missing + mismatched)[:5])
        more = len(missing) + len(mismatched) - 5
        raise ValidationError(
            f"the weights in {folder} do not fit its config.json: {len(missing)} tensors missing, "
            f"{len(mismatched)} of another shape ({shown}{f' and {more} more' if more > 0 else ''}); "
            "it is not a complete SAM checkpoint in Hugging Face format"
        )
    model.eval()
    return SamNet(model)
