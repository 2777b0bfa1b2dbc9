"""The stack's first step: refuse to start while any secret is empty, a placeholder or
too short -- for every service, PostgreSQL and Grafana included -- and only then prepare
the front door (its TLS certificate and its people's password file).

Compose runs it before anything else: PostgreSQL (which sets its admin password on first
start) waits for it to succeed, and everything else waits for PostgreSQL or for it.  So a
placeholder stops the stack before a database or a role exists.

    python -m operations.check_config   (exit 1 with one line per problem)
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
import secrets
import shutil
import sys
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

from core.api_keys import KeySpecError, parse_keys
from core.settings import PLACEHOLDER_MARKERS

# Each secret, and who it protects.
SECRETS = {
    "POSTGRES_PASSWORD": "PostgreSQL's admin role",
    "MLFLOW_DB_PASSWORD": "MLflow's database role",
    "PREFECT_DB_PASSWORD": "Prefect's database role",
    "MONITORING_DB_PASSWORD": "the prediction log's database role",
    "ADMIN_PASSWORD": "people's login (the front door, the Prefect API and UI, Grafana)",
    "PREDICTION_ID_KEY": "the key that tags prediction ids",
}
MIN_SECRET_LENGTH = 16
GATEWAY_DIR = Path(os.environ.get("GATEWAY_DIR", "/var/lib/onebox/gateway"))
USER_TLS_DIR = Path(os.environ.get("GATEWAY_USER_TLS_DIR", "/etc/onebox/user-tls"))
CERT_DAYS = 397  # what browsers accept for a leaf certificate
RENEW_BEFORE = timedelta(days=30)


def problems(env: Mapping[str, str]) -> list[str]:
    """Everything wrong with the stack's configuration, one line each (empty: all good)."""
    found = []
    for name, protects in SECRETS.items():
        value = env.get(name, "")
        if not value:
            found.append(f"{name} is empty ({protects}): run `make up`, which generates .env, "
                         "or set it")
        elif any(marker in value.lower() for marker in PLACEHOLDER_MARKERS):
            found.append(f"{name} is a placeholder ({protects}): replace it")
        elif len(value) < MIN_SECRET_LENGTH:
            found.append(f"{name} is shorter than {MIN_SECRET_LENGTH} characters ({protects})")
    user = env.get("ADMIN_USER", "")
    if not user or ":" in user:
        found.append("ADMIN_USER must be set, without ':' (it is a basic-auth user name)")
    try:
        keys = parse_keys(env.get("PREDICTOR_API_KEYS", ""))
    except KeySpecError as exc:
        found.append(str(exc))
    else:
        if not keys:
            found.append("PREDICTOR_API_KEYS names no key: the predictor would answer anyone")
    public_url = env.get("PUBLIC_URL", "")
    if urlsplit(public_url).scheme != "https" or not urlsplit(public_url).hostname:
        found.append(f"PUBLIC_URL must be the front door's https:// address, got {public_url!r}")
    if env.get("APP_ENV", "local") != "local":
        placeholders = sorted(name for name, value in env.items()
                              if any(marker in value.lower() for marker in PLACEHOLDER_MARKERS))
        found += [f"{name} still holds a placeholder (APP_ENV={env.get('APP_ENV')})"
                  for name in placeholders if name not in SECRETS]
    return found


def htpasswd_line(user: str, password: str) -> str:
    """`user:{SSHA}...`: salted SHA-1, which nginx reads on every platform (the passwords
    are random and long, so the hash's speed does not matter)."""
    salt = secrets.token_bytes(8)
    digest = hashlib.sha1(password.encode() + salt).digest()
    return f"{user}:{{SSHA}}{base64.b64encode(digest + salt).decode()}"


def hostnames(env: Mapping[str, str]) -> list[str]:
    """Names the certificate must cover: PUBLIC_URL's host, GATEWAY_HOSTNAMES, loopback."""
    names = [urlsplit(env.get("PUBLIC_URL", "")).hostname or "localhost"]
    names += [n.strip() for n in env.get("GATEWAY_HOSTNAMES", "").split(",") if n.strip()]
    names += ["localhost", "127.0.0.1"]
    return list(dict.fromkeys(names))


def self_signed(names: list[str], cert_path: Path, key_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0]),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "onebox (self-signed)")])
    alt_names: list[x509.GeneralName] = []
    for name in names:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt_names.append(x509.DNSName(name))
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=CERT_DAYS))
            .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    _write(key_path, key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()), 0o600)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _certificate_fits(cert_path: Path, names: list[str]) -> bool:
    """A self-signed certificate made earlier still covers `names` and is not expiring."""
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return False
    covered = {str(v) for v in alt.get_values_for_type(x509.DNSName)}
    covered |= {str(v) for v in alt.get_values_for_type(x509.IPAddress)}
    return set(names) <= covered and cert.not_valid_after_utc - datetime.now(UTC) > RENEW_BEFORE


def prepare_gateway(env: Mapping[str, str], folder: Path = GATEWAY_DIR,
                    user_tls: Path = USER_TLS_DIR) -> str:
    """The front door's TLS certificate (the user's when given, else self-signed) and its
    password file, in `folder`; returns what was done."""
    tls = folder / "tls"
    tls.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = tls / "cert.pem", tls / "key.pem"
    if (user_tls / "cert.pem").is_file() and (user_tls / "key.pem").is_file():
        shutil.copyfile(user_tls / "cert.pem", cert_path)
        _write(key_path, (user_tls / "key.pem").read_bytes(), 0o600)
        done = f"TLS: the certificate given in {user_tls}"
    elif _certificate_fits(cert_path, hostnames(env)):
        done = "TLS: the self-signed certificate made earlier"
    else:
        self_signed(hostnames(env), cert_path, key_path)
        done = f"TLS: a new self-signed certificate for {', '.join(hostnames(env))}"
    _write(folder / "htpasswd",
           (htpasswd_line(env["ADMIN_USER"], env["ADMIN_PASSWORD"]) + "\n").encode(), 0o644)
    return done


def _write(path: Path, data: bytes, mode: int) -> None:
    # Written aside and renamed: nginx never reads half a file.
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def main() -> int:
    found = problems(os.environ)
    if found:
        print("the stack will not start until its configuration is fixed:", file=sys.stderr)
        for line in found:
            print(f"  - {line}", file=sys.stderr)
        return 1
    print("configuration: every secret set")
    print(prepare_gateway(os.environ))
    return 0


if __name__ == "__main__":
    sys.exit(main())
