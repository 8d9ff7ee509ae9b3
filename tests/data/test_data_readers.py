"""Readers: every format, gzip, globs of shards, ram:// paths."""

import numpy as np
import pytest
import tensorflow as tf

from data_testlib import sequence_example, write_csv, write_jsonl, write_tfrecord
from data.canonical import float_steps
from data.config import DataConfig
from data.readers import expand_patterns, file_format, read_records
from data.records import RecordValidator

TOKENS = [{"tokens": ["a", "b"], "label": "x"}, {"tokens": ["c"], "label": "y", "weight": 2.0}]


def examples(pattern, config=DataConfig()):
    validator = RecordValidator(config)
    return [(r.number, validator(r)) for r in read_records(pattern)]


@pytest.mark.parametrize("name", ["d.jsonl", "d.json", "d.jsonl.gz"])
def test_jsonl(tmp_path, name):
    path = write_jsonl(tmp_path / name, TOKENS)
    got = examples(path)
    assert [n for n, _ in got] == [1, 2]
    assert [(e.tokens, e.label, e.weight) for _, e in got] == [
        (("a", "b"), "x", 1.0), (("c",), "y", 2.0)]
    assert got[0][1].id == f"{path}:1"  # no id field: file and line


@pytest.mark.parametrize("name,delimiter", [("d.csv", ","), ("d.tsv", "\t"), ("d.csv.gz", ","),
                                            ("d.tsv.gz", "\t")])
def test_csv_and_tsv(tmp_path, name, delimiter):
    path = write_csv(tmp_path / name, ["id", "text", "labels", "weight"],
                     [["a", "Hello, world", "x|y", "0.5"], ["b", "two  words", "", ""]],
                     delimiter=delimiter)
    got = examples(path)
    assert [n for n, _ in got] == [2, 3]  # line numbers: the header is line 1
    (_, first), (_, second) = got
    assert first.tokens == ("hello", ",", "world") and first.labels == ("x", "y")
    assert first.weight == 0.5 and first.id == "a"
    assert second.tokens == ("two", "words") and second.labels == () and second.weight == 1.0


def test_csv_tokens_column_and_label(tmp_path):
    path = write_csv(tmp_path / "d.csv", ["tokens", "label"], [["A b", "3"]])
    [(_, example)] = examples(path)
    assert example.tokens == ("A", "b") and example.label == "3"  # tokens are taken verbatim


@pytest.mark.parametrize("name", ["d.tfrecord", "d.tfrecord.gz"])
def test_tfrecord_sequence_example(tmp_path, name):
    path = write_tfrecord(tmp_path / name, [
        sequence_example({"label": [b"x"], "weight": [0.5], "id": [7]},
                         {"features": [[1.0, 2.0], [3.0, 4.0]]}),
        sequence_example({"label": [3]}, {"tokens": [[b"a"], [b"b"]]}),
        sequence_example({"labels": [b"x"]}, {"tokens": [[b"a"]]}),
        sequence_example({}, {"tokens": [[b"a"], [b"b"]], "tags": [[1], [2]]}),
    ])
    validator = RecordValidator(DataConfig())
    raws = list(read_records(path))
    assert [r.number for r in raws] == [1, 2, 3, 4]
    dense = validator(raws[0])
    assert dense.features.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert (dense.label, dense.weight, dense.id) == ("x", 0.5, "7")
    # Each target/input kind decodes; a fresh validator per kind since the first fixes them.
    assert RecordValidator(DataConfig())(raws[1]).label == "3"
    assert RecordValidator(DataConfig())(raws[2]).labels == ("x",)  # one value stays a list
    tagged = RecordValidator(DataConfig())(raws[3])
    assert tagged.tokens == ("a", "b") and tagged.tags == ("1", "2")


def test_glob_of_shards_sorted_and_missing_pattern(tmp_path):
    for i in (2, 0, 1):
        write_jsonl(tmp_path / f"train-{i}.jsonl", [{"tokens": [f"t{i}"], "label": "x"}])
    files = expand_patterns(f"{tmp_path}/train-*.jsonl")
    assert [f.rsplit("/", 1)[1] for f in files] == ["train-0.jsonl", "train-1.jsonl",
                                                      "train-2.jsonl"]
    got = examples(f"{tmp_path}/train-*.jsonl")
    assert [e.tokens for _, e in got] == [("t0",), ("t1",), ("t2",)]
    with pytest.raises(FileNotFoundError, match="nothing-\\*.jsonl"):
        expand_patterns(f"{tmp_path}/train-*.jsonl,{tmp_path}/nothing-*.jsonl")


def test_unknown_suffix_is_an_error():
    with pytest.raises(ValueError, match="unknown file type"):
        file_format("data/train.parquet")
    assert file_format("x/a.TSV.gz") == "csv"


def test_ram_filesystem():
    path = write_jsonl("ram://readers/a.jsonl.gz", TOKENS)
    assert [e.tokens for _, e in examples("ram://readers/*.jsonl.gz")] == [("a", "b"), ("c",)]
    assert path == "ram://readers/a.jsonl.gz"


def test_custom_field_names_with_kinds(tmp_path):
    path = write_csv(tmp_path / "d.csv", ["sentence", "words", "ner", "w"],
                     [["Hi there", "a b", "O O", "2"]])
    [raw] = read_records(path)
    as_text = RecordValidator(DataConfig(input_field="sentence", target_field="ner:tags",
                                         weight_field="w"))(raw)
    assert as_text.tokens == ("hi", "there") and as_text.tags == ("O", "O")
    assert as_text.weight == 2.0
    as_tokens = RecordValidator(DataConfig(input_field="words:tokens", target_field="ner:tags"))(raw)
    assert as_tokens.tokens == ("a", "b")


@pytest.mark.parametrize("shape", [(1, 1), (3, 2), (200, 32), (5, 40)])  # 40 floats: 160 bytes, a 2-byte varint
def test_float_steps_are_the_bytes_protobuf_writes(shape):
    values = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    values[0, 0] = -0.0
    reference = tf.train.FeatureList()
    for step in values.tolist():
        reference.feature.add().float_list.value.extend(step)
    assert float_steps(values) == reference.SerializeToString()
    assert tf.train.FeatureList.FromString(float_steps(values)) == reference
