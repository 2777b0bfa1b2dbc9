"""`make rollback`: move @champion back to the version holding @previous.

The two aliases swap, so the rolled-back version keeps @previous and running
rollback again rolls forward.  The predictor follows the alias on its own
(within MODEL_POLL_SECONDS).
"""

from __future__ import annotations

from core import registry
from core.settings import Settings


def rollback(settings: Settings) -> tuple[str, str]:
    """Swap @champion and @previous; returns (old champion, new champion)."""
    client = registry.connect(settings)
    champion = registry.version_by_alias(client, settings.model_name, registry.CHAMPION)
    previous = registry.version_by_alias(client, settings.model_name, registry.PREVIOUS)
    if champion is None or previous is None:
        raise SystemExit(f"{settings.model_name}: nothing to roll back to "
                         f"(@champion={getattr(champion, 'version', None)}, "
                         f"@previous={getattr(previous, 'version', None)})")
    # Never back to a version of another business (a classifier where a regressor serves).
    loaded = {alias: registry.load_version(client, settings.model_name, str(v.version),
                                           settings.model_cache_dir)
              for alias, v in (("champion", champion), ("previous", previous))}
    try:
        registry.require_same_business(loaded["champion"], loaded["previous"].schema,
                                       f"@previous (v{previous.version})")
    except registry.OtherBusiness as exc:
        raise SystemExit(f"{settings.model_name}: not rolled back: {exc}") from None
    client.set_registered_model_alias(settings.model_name, registry.CHAMPION, previous.version)
    client.set_registered_model_alias(settings.model_name, registry.PREVIOUS, champion.version)
    client.set_model_version_tag(settings.model_name, str(previous.version), "rollback.from",
                                 str(champion.version))
    return str(champion.version), str(previous.version)


def main() -> None:
    old, new = rollback(Settings.from_env())
    print(f"@champion: v{old} -> v{new} (v{old} now holds @previous)")


if __name__ == "__main__":
    main()
