"""pytest at the repository root: quiet TensorFlow's C++ logs; the repo root is importable."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
