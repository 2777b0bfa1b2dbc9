"""Make the stack's `.env` from a template (`.env.local` or `.env.cloud`): every secret the
template leaves empty gets a random value, the predictor gets two API keys.

`make up` runs it when there is no `.env` yet (and never overwrites one):

    python3 -m operations.generate_env --template .env.local --out .env

Standard library only (and core.api_keys, which is too), so it runs before any
virtualenv exists.  The file is written with mode 0600; `.env` is in .gitignore and
.dockerignore.  Printed: where it went and the people login's user, never a secret.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from core.api_keys import new_key

# Passwords and keys the stack needs; a template leaves them empty.
PASSWORDS = ("POSTGRES_PASSWORD", "MLFLOW_DB_PASSWORD", "PREFECT_DB_PASSWORD",
             "MONITORING_DB_PASSWORD", "ADMIN_PASSWORD")
KEYS = ("PREDICTION_ID_KEY",)
# The predictor's keys: their records (PREDICTOR_API_KEYS) and the tokens a client sends.
CLIENT_TOKENS = {"ONEBOX_PREDICT_KEY": ("client", ["predict"], False),
                 "ONEBOX_FEEDBACK_KEY": ("labels", ["feedback"], True)}
API_KEY_RECORDS = "PREDICTOR_API_KEYS"
SECRETS = (*PASSWORDS, *KEYS, API_KEY_RECORDS, *CLIENT_TOKENS)


# The generated file's first line names its template, so `make up env=cloud` can tell that
# an existing .env was made for the other env instead of using it silently.
GENERATED_FROM = "# Generated {stamp} by operations/generate_env.py from {template}: "


def fill(template: str, overrides: Mapping[str, str] | None = None,
         template_name: str = "a template") -> str:
    """The template's text with every empty secret given a value (`overrides` first)."""
    overrides = dict(overrides or {})
    values: dict[str, str] = {}
    for name in PASSWORDS:
        values[name] = secrets.token_urlsafe(24)  # 192 bits, URL-safe
    for name in KEYS:
        values[name] = secrets.token_urlsafe(32)
    records = []
    for variable, (key_id, scopes, trusted) in CLIENT_TOKENS.items():
        token, key = new_key(key_id, scopes, trusted=trusted)
        values[variable] = token
        records.append(key.spec())
    values[API_KEY_RECORDS] = ",".join(records)
    values.update(overrides)

    lines = []
    seen = set()
    for line in template.splitlines():
        name, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#") and name.strip() in values:
            name = name.strip()
            seen.add(name)
            if name in overrides or (name in SECRETS and not value.strip()):
                line = f"{name}={values[name]}"
        lines.append(line)
    lines += [f"{name}={value}" for name, value in overrides.items() if name not in seen]
    missing = [name for name in SECRETS if name not in seen and name not in overrides]
    if missing:
        raise SystemExit(f"the template lacks {', '.join(missing)}: it is not a onebox template")
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    header = (GENERATED_FROM.format(stamp=stamp, template=template_name)
              + "random passwords and keys.\n"
              "# Keep it secret; never commit it (.gitignore has it).  Delete it and run\n"
              "# `make up` again to start over with new secrets (and empty volumes).\n")
    return header + "\n".join(lines) + "\n"


def generated_from(env_file: Path) -> str | None:
    """The template `env_file` was generated from (its first line says), or None (a file
    from before that line, or written by hand)."""
    first = env_file.read_text().partition("\n")[0]
    found = re.match(r"# Generated .* by operations/generate_env\.py from (\S+): ", first)
    return found.group(1) if found else None


def write_private(path: Path, text: str) -> None:
    """Write `text` to a new file only its owner can read; refuse to overwrite."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--template", type=Path, default=Path(".env.local"))
    parser.add_argument("--out", type=Path, default=Path(".env"))
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a value to use instead of the template's or a generated one")
    parser.add_argument("--same-template", action="store_true",
                        help="refuse an existing file generated from another template "
                             "(`make up env=...` asks this)")
    args = parser.parse_args(argv)
    if args.out.exists():
        made_from = generated_from(args.out)
        if (args.same_template and made_from is not None
                and made_from != args.template.name):
            print(f"{args.out} was generated from {made_from}, not {args.template.name}: the "
                  f"stack would run on it as it is.  Keep it (leave env= out), or move it "
                  f"away (mv {args.out} {args.out}.{made_from.removeprefix('.env.')}) to "
                  f"generate one from {args.template.name} with new secrets (and empty "
                  "volumes).", file=sys.stderr)
            return 2
        print(f"{args.out} exists{f' (from {made_from})' if made_from else ''}: kept as it "
              "is (delete it to generate new secrets)")
        return 0
    overrides = dict(item.split("=", 1) for item in args.set)
    write_private(args.out, fill(args.template.read_text(), overrides,
                                 template_name=args.template.name))
    admin = next((line.split("=", 1)[1] for line in args.out.read_text().splitlines()
                  if line.startswith("ADMIN_USER=")), "?")
    print(f"{args.out}: generated from {args.template} with random passwords and keys "
          f"(people log in as {admin!r}; the password is ADMIN_PASSWORD in the file)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
