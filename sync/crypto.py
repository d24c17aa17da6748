"""Encryption of stored CRM credentials (Fernet: AES-128-CBC + HMAC-SHA256).

``CRMSYNC_SECRET_KEY`` holds one key, or several separated by commas during a rotation:
the first encrypts, every one decrypts (``MultiFernet``). Rotating, without stopping any
process:

1. make a key (``crmsync secret-key``) and give every process ``NEW,OLD``;
2. ``crmsync secret-key rotate`` re-encrypts every stored credential under ``NEW``
   (:func:`rotate_credentials`) while workers keep syncing: they read both;
3. give every process ``NEW`` alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy.orm import Session

from sync.errors import SecretKeyMissing as SecretKeyMissing
from sync.logs import register_secret
from sync.settings import Settings
from sync.store import sync_repository as repo


def new_secret_key() -> str:
    """A fresh key for ``CRMSYNC_SECRET_KEY``."""
    return Fernet.generate_key().decode()


def _keys(settings: Settings) -> list[str]:
    if settings.secret_key is None:
        return []
    return [k.strip() for k in settings.secret_key.get_secret_value().split(",") if k.strip()]


def _fernet(settings: Settings) -> MultiFernet:
    keys = _keys(settings)
    if not keys:
        raise SecretKeyMissing(
            "CRMSYNC_SECRET_KEY is not set: it encrypts the stored CRM credentials. "
            "Create one with `crmsync secret-key` and set it in the environment or .env."
        )
    try:
        return MultiFernet([Fernet(key.encode()) for key in keys])
    except ValueError as error:
        raise SecretKeyMissing(
            "CRMSYNC_SECRET_KEY is not a valid key (32 url-safe base64-encoded bytes, or "
            "several separated by commas); create one with `crmsync secret-key`"
        ) from error


def encrypt_credentials(settings: Settings, credentials: dict[str, str]) -> str:
    """Credentials as ciphertext under the first key of ``CRMSYNC_SECRET_KEY``."""
    register_secret(*(v for v in credentials.values() if isinstance(v, str)))
    return _fernet(settings).encrypt(json.dumps(credentials).encode()).decode()


def decrypt_credentials(settings: Settings, token: str) -> dict[str, str]:
    """Credentials from their ciphertext, under any key of ``CRMSYNC_SECRET_KEY``."""
    if not token:
        return {}
    try:
        data: dict[str, str] = json.loads(_fernet(settings).decrypt(token.encode()))
    except InvalidToken as error:
        raise SecretKeyMissing(
            "stored credentials cannot be decrypted with CRMSYNC_SECRET_KEY (was the key changed?)"
        ) from error
    # from now on this process masks them in every log line, should one ever slip in
    register_secret(*(v for v in data.values() if isinstance(v, str)))
    return data


@dataclass(frozen=True)
class Rotation:
    """What :func:`rotate_credentials` did: connections re-encrypted, and how many keys
    ``CRMSYNC_SECRET_KEY`` held (the first is the one everything is under now)."""

    rotated: int
    keys: int


def rotate_credentials(session: Session, settings: Settings) -> Rotation:
    """Re-encrypt every connection's stored credentials under the first key of
    ``CRMSYNC_SECRET_KEY`` (each row locked while it is rewritten, so a concurrent change
    of credentials is never overwritten with old ones). Raises :class:`SecretKeyMissing`
    if any of them cannot be read with the keys given, before anything is written."""
    fernet = _fernet(settings)
    rows = repo.lock_all_connections(session)
    rotated: dict[str, str] = {}
    for row in rows:
        if not row.credentials:
            continue
        try:
            rotated[row.id] = fernet.rotate(row.credentials.encode()).decode()
        except InvalidToken as error:
            raise SecretKeyMissing(
                f"the credentials of connection {row.id} cannot be decrypted with any key of "
                "CRMSYNC_SECRET_KEY: give it the old key too (NEW,OLD) and rotate again"
            ) from error
    for row in rows:
        if row.id in rotated:
            row.credentials = rotated[row.id]
    session.flush()
    return Rotation(len(rotated), len(_keys(settings)))
