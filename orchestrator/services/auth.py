"""Who is calling: password hashes, expiring bearer tokens, API keys and expiring signed file links.

- Passwords: ``pbkdf2_sha256$<iterations>$<salt b64>$<hash b64>`` (hashlib, no extra dependency). Make one with
  ``python -m orchestrator.services.auth hash`` and put it in ``TRITONE_USERS``.
- Tokens: HS256 JWTs with ``sub`` (the user) and ``exp``; ``POST /auth/login`` issues them.
- API keys: ``TRITONE_API_KEYS`` maps a key to a user; sent as ``X-API-Key``.
- Signed links: ``?expires=<unix>&sig=<hmac>`` over the file's path, so ``<audio src>`` and downloads work without a
  header, for ``signed_url_ttl_s`` seconds.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import secrets
import sys
import time
from urllib.parse import urlencode

import jwt

from orchestrator.errors import ApiError
from orchestrator.settings import Settings

_ALGORITHM = "pbkdf2_sha256"
_DEFAULT_ITERATIONS = 200_000
# Verifying against this keeps the time of "no such user" equal to "wrong password".
_DUMMY_HASH = f"{_ALGORITHM}$1000${base64.b64encode(b'0' * 16).decode()}${base64.b64encode(b'0' * 32).decode()}"


def hash_password(password: str, *, iterations: int = _DEFAULT_ITERATIONS) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"{_ALGORITHM}${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, hashed: str) -> bool:
    try:
        algorithm, iterations, salt_b64, digest_b64 = hashed.split("$")
        if algorithm != _ALGORITHM:
            return False
        salt = base64.b64decode(salt_b64)
        expected = base64.b64decode(digest_b64)
        digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, int(iterations))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, expected)


class AuthService:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._secret = settings.resolved_jwt_secret()
        self._link_key = hashlib.sha256(b"tritone-signed-link\0" + self._secret.encode()).digest()
        self._api_keys = {key.encode(): user for key, user in settings.api_keys.items()}

    # --- passwords and tokens ------------------------------------------------------------------------------------
    def authenticate(self, username: str, password: str) -> bool:
        hashed = self._settings.users.get(username)
        ok = verify_password(password, hashed or _DUMMY_HASH)
        return ok and hashed is not None

    def issue_token(self, username: str, *, ttl_s: int | None = None) -> tuple[str, int]:
        ttl = int(ttl_s if ttl_s is not None else self._settings.token_ttl_s)
        now = int(time.time())
        token = jwt.encode({"sub": username, "iat": now, "exp": now + ttl}, self._secret, algorithm="HS256")
        return token, ttl

    def user_from_token(self, token: str) -> str:
        try:
            claims = jwt.decode(token, self._secret, algorithms=["HS256"], options={"require": ["exp", "sub"]})
        except jwt.ExpiredSignatureError:
            raise ApiError(401, "the access token has expired; log in again at POST /auth/login") from None
        except jwt.PyJWTError:
            raise ApiError(401, "the access token is invalid; log in at POST /auth/login") from None
        user = claims.get("sub")
        if not isinstance(user, str) or (user not in self._settings.users and user not in self._api_keys.values()):
            raise ApiError(401, "the access token names an unknown user; log in at POST /auth/login")
        return user

    def user_from_api_key(self, key: str) -> str:
        supplied = key.encode()
        for known, user in self._api_keys.items():
            if hmac.compare_digest(known, supplied):
                return user
        raise ApiError(401, "the API key is not valid")

    # --- signed links --------------------------------------------------------------------------------------------
    def _signature(self, path: str, expires: int) -> str:
        mac = hmac.new(self._link_key, f"{path}\n{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def signed_query(self, path: str, *, ttl_s: int | None = None) -> str:
        """``expires=…&sig=…`` for the file ``path`` (as served under /v1/files/)."""
        expires = int(time.time()) + int(ttl_s if ttl_s is not None else self._settings.signed_url_ttl_s)
        return urlencode({"expires": expires, "sig": self._signature(path, expires)})

    def check_signature(self, path: str, expires: int, sig: str) -> None:
        if expires < time.time():
            raise ApiError(403, "this link has expired; fetch the status again for a fresh one", field="expires")
        if not hmac.compare_digest(self._signature(path, expires), sig):
            raise ApiError(403, "the link signature does not match this file", field="sig")


def main(argv: list[str] | None = None) -> int:
    """``python -m orchestrator.services.auth hash``: read a password, print its hash for TRITONE_USERS."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] != ["hash"]:
        print("usage: python -m orchestrator.services.auth hash  (reads the password from stdin or a prompt)")
        return 2
    password = getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
    if not password:
        print("error: empty password", file=sys.stderr)
        return 2
    print(hash_password(password))
    return 0


if __name__ == "__main__":
    sys.exit(main())
