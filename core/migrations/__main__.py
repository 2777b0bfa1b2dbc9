"""By hand: `python -m core.migrations current | upgrade [REV] | downgrade REV`, on the
prediction store of the settings (PREDICTION_STORE_URL, ONEBOX_HOME...) or --url."""

from __future__ import annotations

import argparse

from core import migrations
from core.settings import Settings
from core.store import PredictionStore


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m core.migrations",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="SQLAlchemy URL (default: the settings' store)")
    parser.add_argument("action", choices=["current", "upgrade", "downgrade"])
    parser.add_argument("revision", nargs="?", help="upgrade: default head; downgrade: "
                        "required (e.g. 0001, or base to drop the tables)")
    args = parser.parse_args(argv)
    if args.action == "downgrade" and not args.revision:
        parser.error("downgrade needs a revision")
    url = args.url or Settings.from_env().prediction_store_url.get_secret_value()
    store = PredictionStore(url)
    try:
        if args.action == "upgrade":
            migrations.upgrade(store.engine, args.revision or "head")
        elif args.action == "downgrade":
            migrations.downgrade(store.engine, args.revision)
        with store.engine.connect() as conn:
            print(f"{migrations.current(conn) or 'none'} (head: {migrations.head()})")
    finally:
        store.dispose()


if __name__ == "__main__":
    main()
