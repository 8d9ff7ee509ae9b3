"""export/: turns a trained model and its data spec into what gets deployed.

`saved_model.py` writes verified SavedModel versions for TF Serving (signatures in
`serving.py`); `verify_standalone.py` is run in a clean process and imports nothing of this
package. May import data/ (spec, tokenizer) and models/ (heads); never trainer/.
"""

from __future__ import annotations

from typing import Dict

import numpy as np

from export.saved_model import export_saved_model

SAMPLE_SIZE = 16


def sample_batch(dataset, size: int = SAMPLE_SIZE) -> Dict[str, np.ndarray]:
    """The first batch of `dataset` (numpy), cut to `size` rows, for export checks."""
    batch = next(iter(dataset))
    return {key: value.numpy()[:size] for key, value in batch.items()}


def export_model(model, spec, config, sample_dataset) -> Dict[str, object]:
    """Exports in every format `config.train.export_formats` names; returns paths and checks."""
    formats = set(config.train.export_formats.split(",")) - {""}
    sample = sample_batch(sample_dataset)
    result: Dict[str, object] = {}
    if "saved_model" in formats:
        result.update(export_saved_model(
            model, spec, config.model.resolved_head, config.train.model_dir, config.train.export_dir, sample))
    return result
