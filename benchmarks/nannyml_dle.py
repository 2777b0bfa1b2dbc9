"""NannyML's own DLE on the windows benchmarks/loss_estimation.py wrote to a folder; run by
that benchmark in NannyML's venv (NANNYML_PYTHON), never imported by onebox.  Prints one
JSON line: {window name: {"mae": ..., "rmse": ...}}.

Each window is one chunk (chunk_number=1): the estimate of the whole window, as onebox's.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")

import nannyml as nml  # noqa: E402
import pandas as pd  # noqa: E402

METRICS = ["mae", "rmse"]


def main(folder: Path) -> None:
    features = json.loads((folder / "features.json").read_text())
    reference = pd.read_csv(folder / "reference.csv")
    dle = nml.DLE(feature_column_names=features, y_pred="y_pred", y_true="y_true",
                  metrics=METRICS, chunk_number=1, tune_hyperparameters=False)
    dle.fit(reference)
    estimates = {}
    for path in sorted(folder.glob("window-*.csv")):
        window = pd.read_csv(path).drop(columns=["y_true"])
        frame = dle.estimate(window).filter(period="analysis").to_df()
        estimates[path.stem.removeprefix("window-")] = {
            metric: float(frame[(metric, "value")].iloc[0]) for metric in METRICS}
    print(json.dumps(estimates))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
