"""Who is calling: password hashes, expiring bearer tokens, API keys and expiring signed file links.

- Passwords: ``pbkdf2_sha256$<iterations>$<salt b64>$<hash b64>`` (hashlib, no extra dependency). Make one with
  ``python -m orchestrator.services.auth hash`` and put it in ``TRITONE_USERS``.
- Tokens: HS256 JWTs with ``sub`` (the user) and ``exp``; ``POST /auth/login`` issues them.
- API keys: ``TRITONE_API_KEYS`` maps a key to a user; sent as ``X-API-Key`` or ``Authorization: Bearer <key>``
  (upstream's convention; :meth:`AuthService.user_from_credential` takes a key or a token), or as ``ai_token``.
- Open mode: ``TRITONE_AUTH=none`` (:func:`check_open_auth`: loopback only, or a loudly logged override).
- Signed links: ``?expires=<unix>&sig=<hmac>`` over the file's path, so ``<audio src>`` and downloads work without a
  header, for ``signed_url_ttl_s`` seconds.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import ipaddress
import logging
import secrets
import sys
import time
from collections.abc import Iterable
from urllib.parse import urlencode

import jwt

from orchestrator.errors import ApiError
from orchestrator.settings import Settings

logger = logging.getLogger(__name__)

_ALGORITHM = "pbkdf2_sha256"
_DEFAULT_ITERATIONS = 200_000


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
        # URL tokens (?access_token=) are signed with their own key: a bearer token is never one, nor the reverse.
        self._url_key = hashlib.sha256(b"tritone-url-token\0" + self._secret.encode()).hexdigest()
        # "No such user" must cost what a wrong password costs: a dummy hash as dear as the dearest real one.
        self._dummy_hash = hash_password(secrets.token_urlsafe(12), iterations=_iterations_of(settings.users.values()))
        self._api_keys = {key.encode(): user for key, user in settings.api_keys.items()}

    # --- passwords and tokens ------------------------------------------------------------------------------------
    def authenticate(self, username: str, password: str) -> bool:
        hashed = self._settings.users.get(username)
        ok = verify_password(password, hashed or self._dummy_hash)
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
        user = self.api_key_user(key)
        if user is None:
            raise ApiError(401, "the API key is not valid")
        return user

    def api_key_user(self, key: str) -> str | None:
        """The user of API key ``key``, or None (every key compared, in constant time each)."""
        supplied = key.encode()
        found: str | None = None
        for known, user in self._api_keys.items():
            if hmac.compare_digest(known, supplied):
                found = user
        return found

    def user_from_credential(self, value: str) -> str:
        """A bearer value or upstream's ``ai_token``: an API key (upstream's convention) or a login token."""
        user = self.api_key_user(value)
        if user is not None:
            return user
        if value.count(".") != 2:  # not a JWT: say what it is not, without hinting at a login
            raise ApiError(401, "the credential is neither a valid API key nor a token from POST /auth/login")
        return self.user_from_token(value)

    @property
    def open_user(self) -> str | None:
        """``TRITONE_AUTH=none``: the one user every request runs as; None when credentials are required."""
        return self._settings.auth_open_user if self._settings.auth == "none" else None

    # --- short-lived URL tokens ----------------------------------------------------------------------------------
    def issue_url_token(self, username: str, *, purpose: str, job_id: str) -> tuple[str, int]:
        """A token for one job's ``purpose`` ("events" or "files") to put in ``?access_token=``, for
        ``stream_token_ttl_s``: what EventSource and ``<audio src>`` carry instead of the bearer token."""
        ttl = int(self._settings.stream_token_ttl_s)
        now = int(time.time())
        claims = {"sub": username, "scp": purpose, "job": job_id, "iat": now, "exp": now + ttl}
        return jwt.encode(claims, self._url_key, algorithm="HS256"), ttl

    def user_from_url_token(self, token: str, *, purpose: str, job_id: str | None) -> str:
        hint = "get one from POST /auth/url-token (the bearer token does not go in URLs)"
        try:
            claims = jwt.decode(
                token, self._url_key, algorithms=["HS256"], options={"require": ["exp", "sub", "scp", "job"]}
            )
        except jwt.ExpiredSignatureError:
            raise ApiError(401, f"the access_token URL token has expired; {hint}", field="access_token") from None
        except jwt.PyJWTError:
            raise ApiError(401, f"access_token is not a URL token; {hint}", field="access_token") from None
        if claims.get("scp") != purpose or job_id is None or claims.get("job") != job_id:
            raise ApiError(
                403,
                f"this access_token is for {claims.get('scp')} of job {claims.get('job')}, not {purpose} of {job_id}",
                field="access_token",
            )
        user = claims.get("sub")
        if not isinstance(user, str) or (user not in self._settings.users and user not in self._api_keys.values()):
            raise ApiError(401, "the access_token names an unknown user", field="access_token")
        return user

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
        supplied = sig.encode("utf-8", "surrogatepass")  # compare bytes: a non-ASCII sig is a mismatch, not a 500
        if not hmac.compare_digest(self._signature(path, expires).encode(), supplied):
            raise ApiError(403, "the link signature does not match this file", field="sig")


def is_loopback(host: str) -> bool:
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_open_auth(settings: Settings) -> None:
    """Refuse ``TRITONE_AUTH=none`` unless the server listens on loopback only, or the override is set (logged
    loudly): nobody opens a public server by accident."""
    if settings.auth != "none":
        return
    if is_loopback(settings.listen_host):
        logger.warning("TRITONE_AUTH=none: no credentials needed; every request runs as %r (loopback %s only)",
                       settings.auth_open_user, settings.listen_host)
        return
    if not settings.auth_open_allow_public:
        raise ValueError(
            f"TRITONE_AUTH=none with listen_host {settings.listen_host!r}: an open server must listen on loopback "
            "only (127.0.0.1 / ::1); bind to loopback, configure users or API keys, or — knowingly — set "
            "TRITONE_AUTH_OPEN_ALLOW_PUBLIC=true"
        )
    logger.critical(
        "TRITONE_AUTH=none ON A NON-LOOPBACK ADDRESS (%s): ANYONE WHO CAN REACH IT RUNS JOBS AS %r AND READS ITS "
        "FILES (TRITONE_AUTH_OPEN_ALLOW_PUBLIC=true)",
        settings.listen_host,
        settings.auth_open_user,
    )


def _iterations_of(hashes: Iterable[str]) -> int:
    counts = []
    for hashed in hashes:
        parts = hashed.split("$")
        if len(parts) == 4 and parts[0] == _ALGORITHM and parts[1].isdigit():
            counts.append(min(int(parts[1]), 10_000_000))
    return max(counts, default=_DEFAULT_ITERATIONS)


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
