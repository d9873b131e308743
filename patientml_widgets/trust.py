"""Which model code the current user trusts to run (like Jupyter's notebook trust).

A project folder can hold Python source (``register_model_code``): predicting with or training
such a model runs it. A folder copied from elsewhere must not run code its new user never
read, so code runs only when the user trusts it: an HMAC-SHA256 of the source under a secret
key of the user's, kept with the signatures outside every project, in the user's data
directory (``$PATIENTML_DATA_DIR``, else the platform's user data directory, e.g.
``~/.local/share/patientml-widgets``). Code a user registers is trusted for that user; copying a
project (or editing its stored source) carries no trust along.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import Any

import orjson
from filelock import FileLock

from .errors import StoreError

__all__ = ["TrustStore", "data_dir"]

_DOMAIN = b"patientml-widgets model code v1\x00"
_KEY_BYTES = 32


def data_dir() -> Path:
    """The user's data directory for this package (``$PATIENTML_DATA_DIR`` wins)."""
    override = os.environ.get("PATIENTML_DATA_DIR")
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("patientml-widgets", appauthor=False))


class TrustStore:
    """The signatures of the code one user trusts (a folder outside every project)."""

    def __init__(self, directory: str | os.PathLike | None = None) -> None:
        self.directory = Path(directory) if directory is not None else data_dir()

    @property
    def _secret_path(self) -> Path:
        return self.directory / "secret"

    @property
    def _db_path(self) -> Path:
        return self.directory / "trusted-code.json"

    def signature(self, source: bytes, *, create: bool = False) -> str | None:
        """The HMAC of ``source`` under the user's key (None when there is no key yet)."""
        key = self._key(create)
        return None if key is None else hmac.new(key, _DOMAIN + source, hashlib.sha256).hexdigest()

    def is_trusted(self, source: bytes) -> bool:
        signature = self.signature(source)
        return signature is not None and signature in self._signatures()

    def trust(self, source: bytes, **about: Any) -> None:
        """Trust ``source`` from now on (``about``: where it came from, kept for the user to read)."""
        signature = self.signature(source, create=True)
        if signature is None:
            raise StoreError(f"no code-trust key in {self.directory}")
        with self._lock():
            signatures = self._signatures()
            signatures[signature] = {k: str(v) for k, v in about.items()}
            self._write(signatures)

    def revoke(self, source: bytes) -> bool:
        """Stop trusting ``source``; True if it was trusted."""
        signature = self.signature(source)
        if signature is None:
            return False
        with self._lock():
            signatures = self._signatures()
            found = signatures.pop(signature, None) is not None
            self._write(signatures)
        return found

    # -- files -----------------------------------------------------------------------

    def _key(self, create: bool) -> bytes | None:
        """The user's key; made (atomically: written whole, then linked into place) if ``create``."""
        key = self._read_key()
        if key is not None or not create:
            return key
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp = self.directory / f".secret.{secrets.token_hex(4)}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(_KEY_BYTES))
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, self._secret_path)  # never replaces a key another kernel made first
            except FileExistsError:
                pass
            finally:
                tmp.unlink(missing_ok=True)
        except OSError as e:
            raise StoreError(
                f"cannot create the code-trust key in {self.directory} ({e.strerror}); "
                "set PATIENTML_DATA_DIR to a folder of yours that is writable"
            ) from None
        return self._read_key()

    def _read_key(self) -> bytes | None:
        try:
            key = self._secret_path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise StoreError(f"cannot read the code-trust key {self._secret_path}: {e.strerror}") from None
        if len(key) != _KEY_BYTES:
            raise StoreError(
                f"the code-trust key {self._secret_path} is damaged ({len(key)} bytes); delete it and trust "
                "your model code again (proj.trust_code(name))"
            )
        return key

    def _signatures(self) -> dict[str, Any]:
        try:
            data = orjson.loads(self._db_path.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, orjson.JSONDecodeError):
            return {}  # unreadable: nothing is trusted (trusting again rewrites it)
        signatures = data.get("signatures") if isinstance(data, dict) else None
        return dict(signatures) if isinstance(signatures, dict) else {}

    def _write(self, signatures: dict[str, Any]) -> None:
        tmp = self._db_path.with_name(f".{self._db_path.name}.{secrets.token_hex(4)}.tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(orjson.dumps({"signatures": signatures}, option=orjson.OPT_INDENT_2))
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self._db_path)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise StoreError(f"cannot write the trusted-code list {self._db_path}: {e.strerror}") from None

    def _lock(self) -> FileLock:
        self.directory.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.directory / ".trusted-code.lock"), timeout=30)
