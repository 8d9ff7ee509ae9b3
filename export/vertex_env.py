"""The Vertex AI variables the export reads, read here only (`trainer.environment` uses these
two functions too, so each variable has one reader in the package).

AIP_MODEL_DIR: where Vertex AI wants the model (the default export dir; an export into it takes
Vertex's layout, `export.saved_model.uses_vertex_layout`). AIP_TENSORBOARD_LOG_DIR: where the
run's summaries went (the run report reads its curves there).
"""

from __future__ import annotations

import os
from typing import Mapping


def model_dir(environ: Mapping[str, str] = os.environ) -> str:
    return environ.get("AIP_MODEL_DIR", "")


def tensorboard_dir(environ: Mapping[str, str] = os.environ) -> str:
    return environ.get("AIP_TENSORBOARD_LOG_DIR", "")
