"""Broken input files through the command a user runs: one clear line naming the file (and the
line), or a counted, logged skip with --skip-bad-records. The same cases without a subprocess,
and their variants, are in tests/data/test_data_bad_input.py."""

import gzip
import os
import subprocess
import sys

import pytest
import tensorflow as tf

from testlib import REPO_ROOT
from trainer_testlib import tiny_data, tiny_flags

pytestmark = pytest.mark.slow  # each test runs the trainer's command line in a subprocess

DEEP_JSON = '{"features": ' + "[" * 100_000 + "]" * 100_000 + ', "label": "1"}'

# Makes reading one file fail as it does for a user without read permission (root reads any
# file, chmod 000 or not), then runs the trainer's main.
DENY_THEN_MAIN = (
    "import sys, tensorflow as tf\n"
    "denied, real = sys.argv[1], tf.io.gfile.GFile\n"
    "def gfile(name, *args, **kwargs):\n"
    "    if str(name) == denied:\n"
    "        raise tf.errors.PermissionDeniedError(None, None, f'{name}; Permission denied')\n"
    "    return real(name, *args, **kwargs)\n"
    "tf.io.gfile.GFile = gfile\n"
    "from trainer.task import main\n"
    "sys.exit(main(sys.argv[2:]))\n")


@pytest.fixture
def data(tmp_path):
    """(train, eval): a 45-record slice of the bundled training file and a small eval file."""
    return tiny_data(tmp_path)


def run(tmp_path, train, evaluation, *extra_flags, prefix=None):
    """Runs `python -m trainer.task` (or `prefix` + flags) for 2 steps, without exporting."""
    flags = tiny_flags(train, evaluation, tmp_path / "model", max_steps=2, export_formats="")
    command = prefix or [sys.executable, "-m", "trainer.task"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p))
    return subprocess.run(command + flags + list(extra_flags), capture_output=True, text=True,
                          timeout=600, cwd=REPO_ROOT, env=env)


def error_line(result, *parts):
    """The stderr line that reports the failure: it holds every part, and no TF noise."""
    assert result.returncode != 0, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if all(p in line for p in parts)]
    assert lines, result.stderr[-3000:]
    for noise in ("function_node", "RecursionError", "UnicodeDecodeError", "[Op:"):
        assert noise not in result.stderr, result.stderr[-3000:]
    return lines[-1]


def append(path, data: bytes):
    with open(path, "ab") as f:
        f.write(data)


# Rows 1 and 2: deep JSON and a non-UTF-8 line are bad records: named, or skipped and counted.

def test_deep_json_and_non_utf8_line_stop_the_run_naming_the_line(tmp_path, data):
    train, evaluation = data
    append(train, DEEP_JSON.encode() + b"\n" + b'{"features": [[1]], "label": "\xff"}\n')
    result = run(tmp_path, train, evaluation)
    error_line(result, f"{train}: line 46: field '<record>': JSON nested too deeply",
               "[unparseable]")


def test_deep_json_and_non_utf8_line_are_skipped_and_counted(tmp_path, data):
    train, evaluation = data
    append(train, DEEP_JSON.encode() + b"\n" + b'{"features": [[1]], "label": "\xff"}\n')
    result = run(tmp_path, train, evaluation, "--skip-bad-records", "--max-skipped-fraction",
                 "0.1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"skipping bad record: {train}: line 46: field '<record>': JSON nested" in result.stderr
    assert f"skipping bad record: {train}: line 47: field '<record>': not UTF-8 text (byte 0xff" \
        in result.stderr
    assert "train: skipped 2 of 47 records: {'unparseable': 2}" in result.stderr


# Row 3: an unterminated CSV quote no longer swallows the rows after it.

def test_unterminated_csv_quote_stops_the_run_at_its_line(tmp_path, data):
    _, evaluation = data
    rows = [f"word{i % 7} more,{'ab'[i % 2]}" for i in range(101)]
    train = tmp_path / "train.csv"
    train.write_text("\n".join(["text,label"] + rows[:98] + ['"never closed,a'] + rows) + "\n")
    result = run(tmp_path, str(train), evaluation, "--skip-bad-records",
                 "--max-skipped-fraction", "0.5")
    error_line(result, f"{train}: line 100: a quoted field opened on this line is never closed")


# Row 4: a directory that the data pattern matches.

def test_a_directory_in_the_data_pattern_is_named(tmp_path, data):
    train, evaluation = data
    (tmp_path / "adir.jsonl").mkdir()
    result = run(tmp_path, f"{tmp_path}/*.jsonl", evaluation)
    error_line(result, f"{tmp_path}/adir.jsonl: is a directory, not a data file")


# Row 5: a file that cannot be read.

def test_unreadable_file_is_one_line_naming_it(tmp_path, data):
    train, evaluation = data
    os.chmod(train, 0)
    prefix = None
    if os.geteuid() == 0:  # chmod 000 does not stop root: make the read fail as it would
        prefix = [sys.executable, "-c", DENY_THEN_MAIN, train]
    result = run(tmp_path, train, evaluation, prefix=prefix)
    error_line(result, f"{train}: cannot be read (permission denied)")


# Row 6: a gzip file cut in the middle.

def test_truncated_gzip_names_the_file_and_the_line_reached(tmp_path, data):
    train, evaluation = data
    compressed = gzip.compress(open(train, "rb").read())
    cut = tmp_path / "train.jsonl.gz"
    cut.write_bytes(compressed[: len(compressed) // 2])
    result = run(tmp_path, str(cut), evaluation)
    error_line(result, f"{cut}: truncated or damaged gzip file: it breaks off after line ")


# Row 7: a corrupt TFRecord file.

def test_corrupt_tfrecord_is_one_line_with_the_offset(tmp_path, data):
    _, evaluation = data
    example = tf.train.SequenceExample(
        context=tf.train.Features(feature={"label": tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[b"1"]))}),
        feature_lists=tf.train.FeatureLists(feature_list={"features": tf.train.FeatureList(
            feature=[tf.train.Feature(float_list=tf.train.FloatList(value=[0.5] * 12))])}))
    path = str(tmp_path / "train.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for _ in range(5):
            writer.write(example.SerializeToString())
    damaged = bytearray(open(path, "rb").read())
    damaged[len(damaged) // 2] ^= 0xFF  # inside the third record
    open(path, "wb").write(bytes(damaged))
    result = run(tmp_path, path, evaluation)
    error_line(result, f"{path}: not a valid TFRecord file: corrupted record at offset ",
               "after 2 good records")
