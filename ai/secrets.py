"""Encryption at rest for tenants' provider keys (Fernet; MultiFernet for key rotation)."""

from __future__ import annotations

from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


@cache
def _fernet() -> MultiFernet:
    return MultiFernet([Fernet(key.encode()) for key in settings.AI_ENCRYPTION_KEYS])


def secret_encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


def secret_decrypt(token: str) -> str:
    """Raises ValueError (never the key material) if no configured key can decrypt it."""
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise ValueError(
            "Stored provider key cannot be decrypted with AI_ENCRYPTION_KEYS."
        ) from None


def secret_rotate(token: str) -> str:
    """Re-encrypt with the newest key (after a new key was put first in AI_ENCRYPTION_KEYS)."""
    return _fernet().rotate(token.encode()).decode()
