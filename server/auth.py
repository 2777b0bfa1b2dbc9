"""Who may call the predictor: bearer API keys with scopes (core.api_keys).

401 when the key is missing, malformed, unknown, wrong or expired (with a
WWW-Authenticate challenge); 403 when a valid key lacks the endpoint's scope.  Every
message says what is wrong without saying which part of a guess was right.  With no
keys configured (the embedded defaults: make demo, make serve) the API is open; the
compose stack always configures keys, and APP_ENV=cloud refuses to start without.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from datetime import date

from core.api_keys import ApiKey, token_digest, token_key_id

# Compared against when the key id is unknown, so that a guess takes as long either way.
_NO_DIGEST = "0" * 64


class AuthError(Exception):
    """A request the key does not allow: HTTP status and a message for the client."""

    def __init__(self, status: int, message: str):
        self.status = status
        self.message = message
        super().__init__(message)


class KeyRing:
    def __init__(self, keys: Mapping[str, ApiKey], today: Callable[[], date] = date.today):
        self.keys = dict(keys)
        self.today = today

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    def check(self, authorization: str | None, scope: str | None) -> ApiKey | None:
        """The key that may call an endpoint of `scope` (None: any valid key will do);
        None when no keys are configured."""
        if not self.enabled:
            return None
        if not authorization:
            raise AuthError(401, "an API key is required: send 'Authorization: Bearer <key>'")
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError(401, "the Authorization header must be 'Bearer <key>'")
        token = token.strip()
        key_id = token_key_id(token)
        key = self.keys.get(key_id) if key_id else None
        matches = hmac.compare_digest(token_digest(token),
                                      key.digest if key is not None else _NO_DIGEST)
        if key is None or not matches:
            raise AuthError(401, "the API key is not valid")
        if key.expired(self.today()):
            raise AuthError(401, f"the API key {key.key_id!r} expired on "
                                 f"{key.expires.isoformat()}")  # type: ignore[union-attr]
        if scope is not None and scope not in key.scopes:
            raise AuthError(403, f"the API key {key.key_id!r} may not {scope} "
                                 f"(its scopes: {', '.join(sorted(key.scopes))})")
        return key
