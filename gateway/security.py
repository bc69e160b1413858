"""Passwords (Argon2), JWT access tokens, opaque refresh tokens and API keys.

Refresh tokens and API keys are random 256-bit secrets: only their SHA-256 is stored, and
lookups compare in constant time. Passwords are hashed with Argon2id.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from shared.errors import Unauthorized, ValidationFailed

_hasher = PasswordHasher()


@functools.cache
def dummy_hash() -> str:
    """Verified against when the e-mail is unknown, so a login takes the same time either way.
    Made once per process, off the import (an Argon2 hash: the gateway's start-up warms it in
    a thread instead of waiting for it)."""
    return _hasher.hash(secrets.token_urlsafe(16))


API_KEY_PREFIX = "irmi_"


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password: str, stored_hash: str | None) -> bool:
    """Constant-work verification: an unknown user still costs one Argon2 verification."""
    try:
        return _hasher.verify(stored_hash or dummy_hash(), password) and stored_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    return _hasher.check_needs_rehash(stored_hash)


def check_password_rules(password: str, email: str, min_length: int) -> None:
    """Length (min..128), at least one letter and one digit, not the e-mail itself."""
    problems: list[str] = []
    if len(password) < min_length:
        problems.append(f"at least {min_length} characters")
    if len(password) > 128:
        problems.append("at most 128 characters")
    if not re.search(r"[A-Za-z]", password) or not re.search(r"\d", password):
        problems.append("at least one letter and one digit")
    if email and password.lower() == email.lower():
        problems.append("different from the e-mail address")
    if problems:
        raise ValidationFailed(
            "The password does not meet the rules: " + "; ".join(problems) + ".",
            details={"field": "password", "rules": problems},
        )


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class AccessClaims:
    user_id: str
    role: str
    session_id: str
    expires_at: int


def issue_access_token(
    secret: str, issuer: str, user_id: str, role: str, session_id: str, ttl_s: int
) -> tuple[str, int]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": user_id,
        "role": role,
        "sid": session_id,
        "iat": now,
        "nbf": now,
        "exp": now + ttl_s,
        "iss": issuer,
        "typ": "access",
        "jti": secrets.token_hex(8),
    }
    return jwt.encode(claims, secret, algorithm="HS256"), now + ttl_s


def decode_access_token(secret: str, issuer: str, token: str) -> AccessClaims:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            issuer=issuer,
            options={"require": ["exp", "sub", "sid", "iss"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("The access token has expired.", details={"reason": "expired"}) from exc
    except jwt.PyJWTError as exc:
        raise Unauthorized("The access token is invalid.", details={"reason": "invalid"}) from exc
    if claims.get("typ") != "access":
        raise Unauthorized("The access token is invalid.", details={"reason": "invalid"})
    return AccessClaims(
        user_id=str(claims["sub"]),
        role=str(claims.get("role", "")),
        session_id=str(claims["sid"]),
        expires_at=int(claims["exp"]),
    )


def new_api_key() -> tuple[str, str, str]:
    """(full key shown once, lookup prefix, sha256 stored)."""
    prefix = secrets.token_hex(6)
    key = f"{API_KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    return key, prefix, sha256_hex(key)


def parse_api_key(key: str) -> str | None:
    """The lookup prefix of a well-formed key, else None."""
    if not key.startswith(API_KEY_PREFIX):
        return None
    rest = key[len(API_KEY_PREFIX) :]
    prefix, sep, secret = rest.partition("_")
    if not sep or len(prefix) != 12 or not secret:
        return None
    return prefix


def hashes_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
