"""The predictor's API keys: bearer tokens, each with scopes, an expiry and a trust flag.

A key is handed out once as a token, `obx_<key id>_<secret>`; the stack keeps only its
record (PREDICTOR_API_KEYS): `id:scope+scope:trusted|untrusted:YYYY-MM-DD|never:sha256`,
records separated by commas.  The SHA-256 of the token is what is stored and compared
(in constant time), so the settings never hold a usable key.

Scopes: `predict` (POST /predict, GET /model, /openapi.json) and `feedback` (POST
/feedback).  Labels sent with a key marked `trusted` are the only ones training, the
gate and live quality use.

Standard library only: `python3 -m operations.generate_env` makes keys on a machine
without the project's virtualenv.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

SCOPES = ("predict", "feedback")
TOKEN_PREFIX = "obx"
_KEY_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")
_TOKEN = re.compile(rf"{TOKEN_PREFIX}_({_KEY_ID.pattern})_([A-Za-z0-9_-]{{32,}})")
_DIGEST = re.compile(r"[0-9a-f]{64}")


class KeySpecError(ValueError):
    """PREDICTOR_API_KEYS cannot be read; the message names the record and the problem."""


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    scopes: frozenset[str]
    trusted: bool
    expires: date | None  # the last day it works; None: no expiry
    digest: str  # hex SHA-256 of the token

    def spec(self) -> str:
        """This key's record, as PREDICTOR_API_KEYS holds it."""
        return ":".join([self.key_id, "+".join(s for s in SCOPES if s in self.scopes),
                         "trusted" if self.trusted else "untrusted",
                         self.expires.isoformat() if self.expires else "never", self.digest])

    def expired(self, today: date) -> bool:
        return self.expires is not None and today > self.expires


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_key_id(token: str) -> str | None:
    """The key id a token names, or None when it is not shaped like one of ours."""
    match = _TOKEN.fullmatch(token)
    return match.group(1) if match else None


def new_key(key_id: str, scopes: Iterable[str], *, trusted: bool = False,
            expires: date | None = None) -> tuple[str, ApiKey]:
    """A new token and its record (give the token out once; keep the record)."""
    scopes = frozenset(scopes)
    _check(key_id, scopes, f"key {key_id!r}")
    token = f"{TOKEN_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
    return token, ApiKey(key_id, scopes, trusted, expires, token_digest(token))


def parse_keys(spec: str) -> dict[str, ApiKey]:
    """PREDICTOR_API_KEYS as records by key id; an empty spec is no keys."""
    keys: dict[str, ApiKey] = {}
    for number, record in enumerate((r.strip() for r in spec.split(",")), start=1):
        if not record:
            continue
        where = f"PREDICTOR_API_KEYS record {number}"
        parts = record.split(":")
        if len(parts) != 5:
            raise KeySpecError(f"{where} must be id:scopes:trusted|untrusted:"
                               f"YYYY-MM-DD|never:sha256, got {len(parts)} fields")
        key_id, scopes_text, trust, expires_text, digest = parts
        scopes = frozenset(s for s in scopes_text.split("+") if s)
        _check(key_id, scopes, where)
        if trust not in ("trusted", "untrusted"):
            raise KeySpecError(f"{where}: trust must be trusted or untrusted, got {trust!r}")
        try:
            expires = None if expires_text == "never" else date.fromisoformat(expires_text)
        except ValueError:
            raise KeySpecError(f"{where}: expiry must be YYYY-MM-DD or never, "
                               f"got {expires_text!r}") from None
        if not _DIGEST.fullmatch(digest):
            raise KeySpecError(f"{where}: the last field must be the token's SHA-256 "
                               "(64 hex digits)")
        if key_id in keys:
            raise KeySpecError(f"{where}: key id {key_id!r} appears twice")
        keys[key_id] = ApiKey(key_id, scopes, trust == "trusted", expires, digest)
    return keys


def _check(key_id: str, scopes: frozenset[str], where: str) -> None:
    if not _KEY_ID.fullmatch(key_id):
        raise KeySpecError(f"{where}: the key id must be 1-40 of a-z, 0-9 and -, "
                           f"starting with a letter or digit, got {key_id!r}")
    unknown = sorted(scopes - set(SCOPES))
    if not scopes or unknown:
        raise KeySpecError(f"{where}: scopes must be among {', '.join(SCOPES)} "
                           f"(joined by +), got {'+'.join(sorted(scopes)) or 'none'}")


def main(argv: list[str] | None = None) -> None:
    """`python -m core.api_keys ID --scopes predict+feedback [--trusted] [--expires DATE]`:
    print a new token (give it out once) and the record to add to PREDICTOR_API_KEYS."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    parser.add_argument("key_id", help="who holds the key: 1-40 of a-z, 0-9 and -")
    parser.add_argument("--scopes", default="predict", help="predict, feedback, joined by +")
    parser.add_argument("--trusted", action="store_true",
                        help="labels sent with this key are used for training and the gate")
    parser.add_argument("--expires", type=date.fromisoformat, default=None,
                        help="the last day the key works (YYYY-MM-DD); default: no expiry")
    args = parser.parse_args(argv)
    try:
        token, key = new_key(args.key_id, args.scopes.split("+"), trusted=args.trusted,
                             expires=args.expires)
    except KeySpecError as exc:
        parser.error(str(exc))
    print(f"token (give it to the client, once): {token}")
    print(f"record (append to PREDICTOR_API_KEYS, comma-separated): {key.spec()}")


if __name__ == "__main__":
    main()
