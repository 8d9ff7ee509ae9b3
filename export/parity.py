"""The one reduction every export check reports: the largest |difference| between two runtimes.

Used by the SavedModel check (`saved_model.py`), the TFLite and ONNX entries of the format table
(`tflite.py`, `onnx_export.py`), so "max |diff|" means the same thing in every report row.
Imports nothing from the package.
"""

from __future__ import annotations

from typing import Dict, Sequence


def largest_diff(per_signature: Dict[str, object],
                 keys: Sequence[str] = ("logits", "probabilities")) -> float:
    """The largest |difference| a checker reported: `per_signature` maps a signature (or case)
    name to {output name: max |diff|}; entries that are not such dicts, and outputs not in
    `keys`, are ignored. 0.0 when nothing was compared."""
    return max((float(diffs[key]) for diffs in per_signature.values() if isinstance(diffs, dict)
                for key in keys if isinstance(diffs.get(key), (int, float))), default=0.0)
