"""Secrets: .env generated with random values from the committed templates, and the config
check that refuses a stack with an empty, placeholder or short secret, then makes the
front door's certificate and password file."""

from __future__ import annotations

import base64
import hashlib
import ssl
import stat
import subprocess
from pathlib import Path

import pytest

from core.api_keys import parse_keys, token_digest, token_key_id
from operations import check_config
from operations.generate_env import SECRETS, fill
from operations.generate_env import main as generate_main
from testkit.stacks import read_env_file

ROOT = Path(__file__).resolve().parent.parent


def generated(template: str, tmp_path: Path, **overrides: str) -> dict[str, str]:
    out = tmp_path / f"{template}.generated"
    out.write_text(fill((ROOT / template).read_text(), overrides))
    return read_env_file(out)


def test_a_generated_env_has_every_secret_random_and_working_keys(tmp_path: Path) -> None:
    first, second = generated(".env.local", tmp_path), generated(".env.local", tmp_path)
    for name in SECRETS:
        assert len(first[name]) >= 32 and first[name] != second[name], name
    assert check_config.problems(first) == []
    keys = parse_keys(first["PREDICTOR_API_KEYS"])
    for variable, scope in (("ONEBOX_PREDICT_KEY", "predict"), ("ONEBOX_FEEDBACK_KEY", "feedback")):
        token = first[variable]
        key = keys[token_key_id(token)]
        assert key.digest == token_digest(token) and key.scopes == {scope}
    assert keys["labels"].trusted and not keys["client"].trusted
    # Everything else is the template's.
    template = read_env_file(ROOT / ".env.local")
    assert {k: v for k, v in first.items() if k not in SECRETS} == {
        k: v for k, v in template.items() if k not in SECRETS}


def test_make_up_never_overwrites_an_env_and_writes_it_private(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / ".env"
    assert generate_main(["--template", str(ROOT / ".env.local"), "--out", str(out)]) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    text = out.read_text()
    printed = capsys.readouterr().out
    assert "'admin'" in printed
    for name in SECRETS:  # nothing secret is printed
        assert read_env_file(out)[name] not in printed
    assert generate_main(["--template", str(ROOT / ".env.local"), "--out", str(out)]) == 0
    assert out.read_text() == text and "kept as it is" in capsys.readouterr().out


def test_the_check_names_every_empty_placeholder_or_short_secret(tmp_path: Path) -> None:
    raw = read_env_file(ROOT / ".env.local")
    found = check_config.problems(raw)
    for name in check_config.SECRETS:
        assert any(line.startswith(f"{name} is empty") for line in found), name
    assert any("PREDICTOR_API_KEYS names no key" in line for line in found)

    env = generated(".env.local", tmp_path, ADMIN_PASSWORD="change-me-please-now",
                    POSTGRES_PASSWORD="short")
    assert check_config.problems(env) == [
        "POSTGRES_PASSWORD is shorter than 16 characters (PostgreSQL's admin role)",
        "ADMIN_PASSWORD is a placeholder (people's login (the front door, the Prefect API "
        "and UI, Grafana)): replace it"]
    # The cloud template: every secret generated, but the address is still a placeholder.
    cloud = generated(".env.cloud", tmp_path)
    assert check_config.problems(cloud) == [
        "PUBLIC_URL still holds a placeholder (APP_ENV=cloud)"]
    assert check_config.problems({**cloud, "PUBLIC_URL": "https://ml.example.org"}) == []
    assert any("PUBLIC_URL must be" in line for line in check_config.problems(
        {**cloud, "PUBLIC_URL": "http://ml.example.org"}))


def test_the_front_door_gets_a_certificate_for_its_names_and_a_password_file(
    tmp_path: Path,
) -> None:
    env = generated(".env.local", tmp_path, PUBLIC_URL="https://ml.example.org",
                    GATEWAY_HOSTNAMES="10.0.0.7, onebox.internal")
    folder, user_tls = tmp_path / "gateway", tmp_path / "user-tls"
    assert "new self-signed" in check_config.prepare_gateway(env, folder, user_tls)
    cert = folder / "tls" / "cert.pem"
    assert stat.S_IMODE((folder / "tls" / "key.pem").stat().st_mode) == 0o600
    context = ssl.create_default_context(cafile=str(cert))  # a client that trusts it parses it
    assert context.cert_store_stats()["x509"] == 1
    from cryptography import x509

    names = x509.load_pem_x509_certificate(cert.read_bytes()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert {str(n.value) for n in names} == {"ml.example.org", "10.0.0.7", "onebox.internal",
                                             "localhost", "127.0.0.1"}
    # Made once: the next start keeps it.
    before = cert.read_bytes()
    assert "made earlier" in check_config.prepare_gateway(env, folder, user_tls)
    assert cert.read_bytes() == before
    # The people's password file: nginx's {SSHA}, for the generated password.
    user, _, hashed = (folder / "htpasswd").read_text().strip().partition(":")
    raw = base64.b64decode(hashed.removeprefix("{SSHA}"))
    digest, salt = raw[:20], raw[20:]
    assert user == "admin"
    assert hashlib.sha1(env["ADMIN_PASSWORD"].encode() + salt).digest() == digest
    assert env["ADMIN_PASSWORD"] not in (folder / "htpasswd").read_text()
    # A user's own certificate wins.
    user_tls.mkdir()
    (user_tls / "cert.pem").write_bytes(b"THEIR CERT")
    (user_tls / "key.pem").write_bytes(b"THEIR KEY")
    assert "given in" in check_config.prepare_gateway(env, folder, user_tls)
    assert cert.read_bytes() == b"THEIR CERT"


def test_an_env_names_its_template_and_sources_in_a_shell(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """`set -a; . ./.env` (the stack's curl does it) reads every value as compose does,
    without a shell error; `make up env=cloud` on an .env made from .env.local stops and
    names it instead of running the stack on it."""
    out = tmp_path / ".env"
    assert generate_main(["--template", str(ROOT / ".env.local"), "--out", str(out)]) == 0
    capsys.readouterr()
    sourced = subprocess.run(
        ["bash", "-c", "set -e; set -a; . ./.env; set +a; env -0"], cwd=tmp_path,
        capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert sourced.returncode == 0 and sourced.stderr == "", sourced.stderr
    shell = dict(item.split("=", 1) for item in sourced.stdout.split("\0") if "=" in item)
    compose_view = read_env_file(out)
    assert compose_view["TRAIN_CRON"] == "0 3 * * *"
    for name, value in compose_view.items():
        assert shell[name] == value, name
    # Another env's template: refused, naming the file and its template; the same: kept.
    cloud = ["--template", str(ROOT / ".env.cloud"), "--out", str(out)]
    assert generate_main([*cloud, "--same-template"]) == 2
    said = capsys.readouterr().err
    assert f"{out} was generated from .env.local, not .env.cloud" in said and "mv " in said
    assert generate_main(["--template", str(ROOT / ".env.local"), "--out", str(out),
                          "--same-template"]) == 0
    assert "(from .env.local): kept as it is" in capsys.readouterr().out
    # Without env= (the default), an existing .env is used whatever made it.
    assert generate_main(cloud) == 0
