"""Alertmanager's config, rendered from the environment when the stack starts.

Alertmanager does not expand environment variables in its config file, so compose's
one-off `alertmanager-config` service runs this before Alertmanager starts:

    python -m monitoring.alertmanager.render --out /var/lib/onebox/alertmanager/alertmanager.yml
    python -m monitoring.alertmanager.render --out -      (print it)

The routing (grouping, repeats, inhibitions) is routing.yml's; the receivers come from:

    ALERT_WEBHOOK_URL    Alertmanager's webhook JSON is POSTed there (http:// or https://)
    ALERT_EMAIL_TO       e-mail to these addresses (comma-separated), through
    SMTP_SMARTHOST       the SMTP server, host:port
    SMTP_FROM            the sender address
    SMTP_AUTH_USERNAME, SMTP_AUTH_PASSWORD   the SMTP login (both or neither)
    SMTP_REQUIRE_TLS     on (default) or off: STARTTLS required

None set: a `null` receiver -- Alertmanager starts, groups and shows the alerts, sends them
to nobody -- and the output says so.  A bad value (a URL that is not one, half an SMTP
setup, a placeholder with APP_ENV=cloud) stops it with exit code 1 and a message naming
the variable, so Alertmanager never starts on a config that loses alerts quietly.  Nothing
it prints holds a password or a webhook's path (which may carry a token).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from core.settings import PLACEHOLDER_MARKERS

ROUTING = Path(__file__).with_name("routing.yml")
RECEIVER = "onebox"
NULL_RECEIVER = "null"
WEBHOOK = ("ALERT_WEBHOOK_URL",)
EMAIL = ("ALERT_EMAIL_TO", "SMTP_SMARTHOST", "SMTP_FROM", "SMTP_AUTH_USERNAME",
         "SMTP_AUTH_PASSWORD", "SMTP_REQUIRE_TLS")
# Every variable read here (compose hands each one to the alertmanager-config service).
VARIABLES = ("APP_ENV", *WEBHOOK, *EMAIL)
_ADDRESS = re.compile(r"[^@\s,<>\"']+@[^@\s,<>\"']+")
_SMARTHOST = re.compile(r"(?P<host>[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\]):(?P<port>\d{1,5})")
_SWITCH = {"on": True, "true": True, "1": True, "yes": True,
           "off": False, "false": False, "0": False, "no": False}


class ReceiverConfigError(ValueError):
    """The receivers' settings are wrong; the message names each variable."""


@dataclass(frozen=True)
class Email:
    to: tuple[str, ...]
    smarthost: str
    sender: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    require_tls: bool = True


@dataclass(frozen=True)
class Receivers:
    """Where notifications go: a webhook, e-mail, both, or nowhere."""

    webhook_url: str | None = field(default=None, repr=False)
    email: Email | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Receivers:
        """Read and check the receiver variables; ReceiverConfigError lists every problem."""
        env = os.environ if env is None else env
        value = {name: env.get(name, "").strip() for name in VARIABLES}
        problems: list[str] = []
        if value["APP_ENV"] not in ("", "local"):
            problems += [f"{name} still holds a placeholder (APP_ENV={value['APP_ENV']})"
                         for name in (*WEBHOOK, *EMAIL)
                         if any(marker in value[name].lower() for marker in PLACEHOLDER_MARKERS)]
        webhook = _webhook_url(value["ALERT_WEBHOOK_URL"], problems)
        email = _email(value, problems)
        if problems:
            raise ReceiverConfigError("; ".join(problems))
        return cls(webhook_url=webhook, email=email)

    @property
    def configured(self) -> bool:
        return self.webhook_url is not None or self.email is not None

    def describe(self) -> str:
        """Where notifications go, for the log: no password, no webhook path."""
        if not self.configured:
            return ("no receiver configured: Alertmanager groups and shows the alerts but "
                    "sends them to nobody (a `null` receiver).  Set ALERT_WEBHOOK_URL, or "
                    "ALERT_EMAIL_TO with SMTP_SMARTHOST and SMTP_FROM, and start it again")
        where = []
        if self.webhook_url is not None:
            parts = urlsplit(self.webhook_url)
            where.append(f"to the webhook at {parts.scheme}://{parts.hostname}"
                         f"{f':{parts.port}' if parts.port else ''} (path not shown)")
        if self.email is not None:
            login = " with a login" if self.email.username else ""
            where.append(f"by e-mail to {', '.join(self.email.to)} through "
                         f"{self.email.smarthost}{login}")
        return "notifications go " + " and ".join(where)


def _webhook_url(raw: str, problems: list[str]) -> str | None:
    if not raw:
        return None
    # The value is never echoed: a webhook's path is often its secret.
    parts = urlsplit(raw)
    if any(char.isspace() for char in raw):
        problems.append("ALERT_WEBHOOK_URL must be a URL without spaces")
    elif parts.scheme not in ("http", "https"):
        problems.append("ALERT_WEBHOOK_URL must start with http:// or https:// "
                        f"(got {parts.scheme + '://' if parts.scheme else 'no scheme'})")
    elif not parts.hostname:
        problems.append("ALERT_WEBHOOK_URL has no host name")
    else:
        try:
            parts.port  # noqa: B018 - urlsplit checks the port only when asked
        except ValueError:
            problems.append("ALERT_WEBHOOK_URL has a port that is not a number from 1 to 65535")
        else:
            return raw
    return None


def _email(value: Mapping[str, str], problems: list[str]) -> Email | None:
    to, smarthost, sender = value["ALERT_EMAIL_TO"], value["SMTP_SMARTHOST"], value["SMTP_FROM"]
    username, password = value["SMTP_AUTH_USERNAME"], value["SMTP_AUTH_PASSWORD"]
    if not to and not smarthost:
        stray = [name for name in ("SMTP_FROM", "SMTP_AUTH_USERNAME", "SMTP_AUTH_PASSWORD")
                 if value[name]]
        if stray:
            problems.append(f"{', '.join(stray)} set but SMTP_SMARTHOST and ALERT_EMAIL_TO are "
                            "empty: set both for e-mail alerts, or clear these")
        return None
    before = len(problems)
    if not to:
        problems.append("ALERT_EMAIL_TO is empty but SMTP_SMARTHOST is set: name who gets "
                        "the alerts (comma-separated addresses)")
    addresses = tuple(address.strip() for address in to.split(",") if address.strip())
    bad = [address for address in addresses if not _ADDRESS.fullmatch(address)]
    if bad:
        problems.append(f"ALERT_EMAIL_TO holds something that is not an e-mail address: "
                        f"{', '.join(bad)}")
    if not smarthost:
        problems.append("SMTP_SMARTHOST is empty but ALERT_EMAIL_TO is set: e-mail needs the "
                        "SMTP server, as host:port")
    else:
        match = _SMARTHOST.fullmatch(smarthost)
        if match is None or not 1 <= int(match["port"]) <= 65535:
            problems.append(f"SMTP_SMARTHOST must be host:port (e.g. smtp.example.com:587), "
                            f"got {smarthost!r}")
    if not sender:
        problems.append("SMTP_FROM is empty: e-mail alerts need a sender address")
    elif not _ADDRESS.fullmatch(sender):
        problems.append(f"SMTP_FROM is not an e-mail address: {sender!r}")
    if bool(username) != bool(password):
        missing = "SMTP_AUTH_PASSWORD" if username else "SMTP_AUTH_USERNAME"
        problems.append(f"{missing} is empty: SMTP_AUTH_USERNAME and SMTP_AUTH_PASSWORD go "
                        "together (both for a login, neither without)")
    require_tls = _SWITCH.get((value["SMTP_REQUIRE_TLS"] or "on").lower())
    if require_tls is None:
        problems.append(f"SMTP_REQUIRE_TLS must be on or off, got {value['SMTP_REQUIRE_TLS']!r}")
    if len(problems) > before:
        return None
    return Email(to=addresses, smarthost=smarthost, sender=sender, username=username or None,
                 password=password or None, require_tls=bool(require_tls))


def render(receivers: Receivers, routing_path: Path = ROUTING) -> dict[str, Any]:
    """The whole Alertmanager config: routing.yml's route and inhibitions, these receivers."""
    config = yaml.safe_load(routing_path.read_text())
    if not receivers.configured:
        config["route"] = {"receiver": NULL_RECEIVER, **config["route"]}
        config["receivers"] = [{"name": NULL_RECEIVER}]
        return config
    receiver: dict[str, Any] = {"name": RECEIVER}
    if receivers.webhook_url is not None:
        receiver["webhook_configs"] = [{"url": receivers.webhook_url, "send_resolved": True}]
    if receivers.email is not None:
        email = receivers.email
        entry: dict[str, Any] = {"to": ", ".join(email.to), "from": email.sender,
                                 "smarthost": email.smarthost,
                                 "require_tls": email.require_tls, "send_resolved": True}
        if email.username:
            entry["auth_username"] = email.username
            entry["auth_password"] = email.password
        receiver["email_configs"] = [entry]
    config["route"] = {"receiver": RECEIVER, **config["route"]}
    config["receivers"] = [receiver]
    return config


HEADER = ("# Written by `python -m monitoring.alertmanager.render` when the stack starts: the\n"
          "# routing of monitoring/alertmanager/routing.yml (its comments say why) and the\n"
          "# receivers the environment names.  Edit those, never this file.\n")


def render_text(receivers: Receivers) -> str:
    return HEADER + yaml.safe_dump(render(receivers), sort_keys=False, width=100)


def write(path: Path, text: str) -> None:
    """Written aside and renamed: a restarting Alertmanager never reads half a file.  Mode
    0644: Alertmanager runs as another user (nobody) in its own container."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True,
                        help="where to write alertmanager.yml ('-': standard output)")
    args = parser.parse_args(argv)
    try:
        receivers = Receivers.from_env()
    except ReceiverConfigError as exc:
        print(f"alertmanager config refused: {exc}", file=sys.stderr)
        return 1
    text = render_text(receivers)
    if args.out == "-":
        sys.stdout.write(text)
    else:
        write(Path(args.out), text)
    # To stderr: with --out - the config alone is on standard output.
    print(f"alertmanager config{'' if args.out == '-' else ' ' + args.out}: "
          f"{receivers.describe()}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
