"""pytest at the repository root: quiet TensorFlow's C++ logs, and make the repo root (the
packages under test) and tests/ (the shared `testlib`) importable, once for every test folder,
with or without PYTHONPATH or an installed package.

A folder's own `*_testlib.py` is importable from that folder's tests and conftest.py because
pytest puts the folder of each module it imports first on sys.path (no `__init__.py` anywhere
under tests/). Processes that tests start are outside pytest: they find the packages through
their working directory, PYTHONPATH or the install (tests/data/data_checkpoint_worker.py, run as
a script, puts the root on its path itself).
"""

import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

_ROOT = pathlib.Path(__file__).resolve().parent
# Ahead of site-packages, so an install of another checkout does not shadow this one. `data`,
# `models`, `trainer` and `export` still resolve to the packages, not to the test folders of the
# same names: those have no __init__.py, and a regular package wins over a namespace one.
for _path in (_ROOT / "tests", _ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))
