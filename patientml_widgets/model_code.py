"""Model code stored in a project: read it, trust it, and run it only when the user trusts it.

``register_model_code`` stores Python source in the project; predicting with a run of that
model, or training it, executes the source. That happens only for source the current user
trusts (:mod:`patientml_widgets.trust`): code they registered themselves, or code they read
and trusted with ``Project.trust_code``. Anything else is an :class:`UntrustedCodeError` that
says which code, where it came from and how to read it. Built-in networks are package code and
need no trust.
"""

from __future__ import annotations

from typing import Any

from .errors import NotFoundError, UntrustedCodeError, ValidationError
from .session import Session
from .trust import TrustStore

__all__ = [
    "code_info", "code_source", "load_model_code", "require_trusted", "signed", "trust_code",
]  # fmt: skip


def signed(source: bytes, factory: str, train_step: str | None) -> bytes:
    """What a signature covers: the source and the names it is entered by (a crafted record cannot
    point trusted source's entry at another function).
    """
    return b"\x00".join([source, factory.encode(), (train_step or "").encode()])


def _signed(record: dict[str, Any], source: bytes) -> bytes:
    return signed(source, str(record.get("factory")), record.get("train_step"))


def code_source(session: Session, name: str) -> tuple[dict[str, Any], bytes]:
    """The record and stored source of registered model code (NotFoundError if none)."""
    record = session.code_record(name)
    if record is None:
        raise NotFoundError(f"no registered model code {name!r} in {session.path}")
    return record, session.blob(record["source_ref"])


def code_info(session: Session, name: str) -> dict[str, Any]:
    """What a user needs to decide on trusting code: name, source, origin, and whether it is trusted."""
    record, source = code_source(session, name)
    return {
        "name": record["name"],
        "source": source.decode("utf-8", errors="replace"),
        "factory": record["factory"],
        "train_step": record.get("train_step"),
        "registered_by": record.get("author") or "unknown",
        "registered": record.get("created"),
        "file": str(session.store.blobs.path(record["source_ref"])),
        "trusted": TrustStore().is_trusted(_signed(record, source)),
    }


def require_trusted(session: Session, name: str, doing: str = "run it") -> tuple[dict[str, Any], bytes]:
    """The code's record and source, or UntrustedCodeError if the current user does not trust it."""
    record, source = code_source(session, name)
    if not TrustStore().is_trusted(_signed(record, source)):
        raise UntrustedCodeError(
            f"the model code {name!r} stored in the project {session.path} (registered by "
            f"{record.get('author') or 'unknown'} on {str(record.get('created', '?'))[:10]}, file "
            f"{session.store.blobs.path(record['source_ref'])}) is Python that you have not trusted, so it "
            f"does not run and this package cannot {doing}. Read it with proj.model_code({name!r}); if you "
            f"trust it, run proj.trust_code({name!r}).",
            name,
        )
    return record, source


def trust_code(session: Session, name: str) -> None:
    """Trust the code as it is stored now (a later change to the source needs trusting again)."""
    record, source = code_source(session, name)
    TrustStore().trust(_signed(record, source), name=record["name"], project=session.path, trusted_by=session.user)


def load_model_code(session: Session, name: str | None, doing: str = "run it") -> tuple[Any, Any, dict[str, Any]]:
    """The factory and train step of registered, trusted model code (executed from its stored source)."""
    if not name:
        return None, None, {}
    record, source = require_trusted(session, name, doing)
    namespace: dict[str, Any] = {"__name__": f"patientml_model_code_{name}"}
    try:
        exec(compile(source.decode(), f"<model code {name!r}>", "exec"), namespace)
    except Exception as e:  # the user's own code: whatever it raises is reported, not a crash
        raise ValidationError(f"the model code {name!r} failed to load ({type(e).__name__}: {e})") from None
    missing = [f for f in (record["factory"], record.get("train_step")) if f and not callable(namespace.get(f))]
    if missing:
        raise ValidationError(f"the model code {name!r} defines no function {missing[0]!r}")
    factory = namespace[record["factory"]]
    step = namespace[record["train_step"]] if record.get("train_step") else None
    return factory, step, record
