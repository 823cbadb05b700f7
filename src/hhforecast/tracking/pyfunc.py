"""The pyfunc flavour of a variant: MLflow loads it and runs hhforecast's own NumPy forward pass.

`mlflow.pyfunc.load_model("models:/hhforecast-5features@production").predict(frame)` and
`mlflow models serve` answer with the very function `hhforecast predict` uses (`predict_frame`
over `load_variant`), so the numbers are the same to the last rounded digit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.pyfunc import PythonModel

from hhforecast.modeling.inference import VariantModel

__all__ = ["VERSION_ARTIFACT", "VariantPyfunc"]

VERSION_ARTIFACT = "version"
"""The name of the pyfunc artifact holding the whole version folder."""
OUTPUT_COLUMNS = ("HH_pred", "HH_lower", "HH_upper", "out_of_range")


class VariantPyfunc(PythonModel):
    """One variant of an hhforecast version, loaded from the version folder it carries.

    Logged without an MLflow signature: its schema check refuses integer columns (a CSV's acft
    and Cycles) for float inputs, and `predict_frame` checks the features itself, clearly."""

    def __init__(self, variant: str) -> None:
        self.variant = variant
        self._model: VariantModel | None = None

    def load_context(self, context: Any) -> None:
        from hhforecast.modeling.artifacts import load_variant

        folder = Path(context.artifacts[VERSION_ARTIFACT])
        self._model = load_variant(folder, self.variant)

    # No type hints on purpose: MLflow reads them to convert the input, and would refuse the
    # integer columns a CSV gives (acft, Cycles) where the model takes floats.
    def predict(self, context, model_input, params=None):
        from hhforecast.modeling.predict import predict_frame

        if self._model is None:
            self.load_context(context)
        assert self._model is not None
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        scored = predict_frame(self._model, frame.reset_index(drop=True), "MLflow input")
        return scored[list(OUTPUT_COLUMNS)]
