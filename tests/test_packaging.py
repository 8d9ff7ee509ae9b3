"""`pip install .` (not only `-e`) must carry the bundled data set and the export check scripts."""

import subprocess
import sys
import zipfile

from testlib import REPO_ROOT


def test_wheel_carries_bundled_data_and_standalone_scripts(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(REPO_ROOT),
         "-w", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (wheel,) = tmp_path.glob("seqtrain-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in ("data/datasets/japanese_vowels/train.jsonl.gz",
                     "data/datasets/japanese_vowels/test.jsonl.gz",
                     "data/datasets/japanese_vowels/README.md",
                     "export/verify_standalone.py", "export/verify_tflite.py",
                     "models/rnn/encoder.py", "trainer/task.py"):
        assert required in names, required
    assert not any(name.startswith("tests/") for name in names)
