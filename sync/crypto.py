"""Encryption of stored CRM credentials (Fernet: AES-128-CBC + HMAC-SHA256)."""

from __future__ import annotations

import json

from cryptography.fernet import Fernet, InvalidToken

from sync.logs import register_secret
from sync.settings import Settings


class SecretKeyMissing(RuntimeError):
    """No ``CRMSYNC_SECRET_KEY``: credentials can be neither stored nor read."""


def new_secret_key() -> str:
    """A fresh key for ``CRMSYNC_SECRET_KEY``."""
    return Fernet.generate_key().decode()


def _fernet(settings: Settings) -> Fernet:
    if settings.secret_key is None or not settings.secret_key.get_secret_value():
        raise SecretKeyMissing(
            "CRMSYNC_SECRET_KEY is not set: it encrypts the stored CRM credentials. "
            "Create one with `crmsync secret-key` and set it in the environment or .env."
        )
    try:
        return Fernet(settings.secret_key.get_secret_value().encode())
    except ValueError as error:
        raise SecretKeyMissing(
            "CRMSYNC_SECRET_KEY is not a valid key (32 url-safe base64-encoded bytes); "
            "create one with `crmsync secret-key`"
        ) from error


def encrypt_credentials(settings: Settings, credentials: dict[str, str]) -> str:
    register_secret(*(v for v in credentials.values() if isinstance(v, str)))
    return _fernet(settings).encrypt(json.dumps(credentials).encode()).decode()


def decrypt_credentials(settings: Settings, token: str) -> dict[str, str]:
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
