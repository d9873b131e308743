"""Training: built-in torch models, the trainer loop, metrics, search spaces.

``torch`` is imported only by the modules that need it (``models``, ``trainer``), and
only when training or predicting; the rest of the package works without it.
"""

from __future__ import annotations

from ..errors import PatientMLError

__all__ = ["require_torch"]

INSTALL_HINT = (
    'training needs PyTorch: pip install torch==2.13.0 (the CPU build) and then pip install "patientml-widgets[train]"'
)


def require_torch() -> None:
    """Raise a clear error naming the install command when torch is missing."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise PatientMLError(INSTALL_HINT) from None
