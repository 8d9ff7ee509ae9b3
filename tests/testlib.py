"""What more than one test folder needs: the repository root, the pinned model settings, slices
of the bundled JapaneseVowels data and free local ports. What only one folder needs lives in that
folder's `*_testlib.py`; the root conftest.py makes this module and the repo root importable."""

from __future__ import annotations

import gzip
import pathlib
import socket

from data.config import bundled_paths

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]

# Pinned rather than taken from ModelConfig's defaults: those are the product's tuned run defaults
# and may change. Equivalence tests (accumulation, XLA, two workers vs one, SavedModel vs TFLite
# vs ONNX) need a model without dropout; a test that wants dropout or another pooling says so.
PINNED = dict(bidirectional=False, pooling="last", input_keep_prob=1.0, state_keep_prob=1.0,
              output_keep_prob=1.0, mask_per_example=False)


def write_bundled_slice(split: str, target, every: int, limit: int = 0) -> list:
    """Writes every `every`-th record of the bundled JapaneseVowels `split` ("train": 270
    records, "test": 370), at most `limit` of them (0: no limit), to the JSONL file `target`.

    Returns the lines written (JSON text, each ending in a newline).
    """
    with gzip.open(bundled_paths()[split], "rt") as f:
        lines = [line for i, line in enumerate(f) if i % every == 0]
    if limit:
        lines = lines[:limit]
    pathlib.Path(target).write_text("".join(lines))
    return lines


def free_ports(n: int = 1) -> list:
    """n distinct TCP ports on 127.0.0.1 that were free a moment ago (all bound at once, so no
    two are the same)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()
