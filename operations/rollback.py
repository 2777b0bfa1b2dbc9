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
    # Read from the versions' tags, not their files: a rollback is the way out when the
    # champion is broken, so it downloads nothing.  Versions from before the tag (binary,
    # all of them) are not checked.
    champion_business = champion.tags.get(registry.BUSINESS_TAG)
    previous_business = previous.tags.get(registry.BUSINESS_TAG)
    if champion_business and previous_business and champion_business != previous_business:
        raise SystemExit(
            f"{settings.model_name}: not rolled back: @champion v{champion.version} predicts "
            f"{champion_business}, @previous v{previous.version} {previous_business}; give "
            "each business a registered model of its own (MODEL_NAME)")
    registry.roll_back(client, settings.model_name, str(champion.version),
                       str(previous.version))
    return str(champion.version), str(previous.version)


def main() -> None:
    old, new = rollback(Settings.from_env())
    print(f"@champion: v{old} -> v{new} (v{old} now holds @previous)")


if __name__ == "__main__":
    main()
