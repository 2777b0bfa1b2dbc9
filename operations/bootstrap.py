"""First start of the stack: if the registry has no champion yet, generate the demo
business's table (when DATA_PATH has none: simulation.demo_tables, by SCHEMA_PATH) and run
the train flow once, so the predictor has a model to serve.  With a champion already there
it does nothing, so it is safe on every `docker compose up`.
"""

from __future__ import annotations

from core import registry
from core.schema import Schema
from core.settings import Settings
from orchestration.train import train
from simulation.demo_tables import NoDemoTable, demo_table


def main() -> None:
    settings = Settings.from_env()
    client = registry.connect(settings)
    champion = registry.version_by_alias(client, settings.model_name, registry.CHAMPION)
    if champion is not None:
        print(f"{settings.model_name} v{champion.version} is @champion: nothing to do")
        return
    if not settings.data_path.exists():
        schema = Schema.load(settings.schema_path)
        try:
            table = demo_table(schema, 10_000, settings.seed)
        except NoDemoTable as exc:
            raise SystemExit(f"{settings.schema_path}: {exc} (there is none at "
                             f"{settings.data_path})") from None
        settings.data_path.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(settings.data_path, index=False)
        print(f"generated demo data at {settings.data_path}")
    result = train()
    metric = result["gate"]["metric"]  # the task's: AUC, or RMSE / MAE for a number
    print(f"trained {result['model_name']} v{result['version']} ({result['task']}): "
          f"holdout {metric.upper()} {result[f'holdout_{metric}']:.4f}, "
          f"promoted={result['promoted']}")


if __name__ == "__main__":
    main()
