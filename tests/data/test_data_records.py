"""Bad records: each kind names file, record and field; skipping counts; the share limit stops."""

import numpy as np
import pytest

from data_testlib import dense_records, sequence_example, write_csv, write_jsonl, write_tfrecord
from data import bad_records as br
from data.config import DataConfig
from data.prepare import prepare_data
from data.readers import read_records
from data.records import RecordValidator

GOOD = {"features": [[1.0, 2.0]], "label": "x"}

# (second record, field named by the error, kind, validator kwargs, config kwargs, first record)
CASES = {
    "unparseable": ('{"features": [[1, 2]], "label": ', "<record>", br.UNPARSEABLE, {}, {}, GOOD),
    "not_an_object": ("[1, 2]", "<record>", br.UNPARSEABLE, {}, {}, GOOD),
    "both_inputs": ({"features": [[1, 2]], "tokens": ["a"], "label": "x"}, "features/tokens",
                    br.INPUT_FIELDS, {}, {}, GOOD),
    "no_input": ({"label": "x"}, "features/tokens/text", br.INPUT_FIELDS, {}, {}, GOOD),
    "other_input_kind": ({"tokens": ["a"], "label": "x"}, "tokens", br.INPUT_FIELDS, {}, {}, GOOD),
    "empty_features": ({"features": [], "label": "x"}, "features", br.EMPTY_SEQUENCE, {}, {}, GOOD),
    "empty_text": ({"text": " ", "label": "x"}, "text", br.EMPTY_SEQUENCE, {}, {},
                   {"text": "a", "label": "x"}),
    "ragged": ({"features": [[1, 2], [3]], "label": "x"}, "features", br.RAGGED_FEATURES, {}, {},
               GOOD),
    "width_vs_first": ({"features": [[1, 2, 3]], "label": "x"}, "features", br.FEATURE_WIDTH, {},
                       {}, GOOD),
    "width_vs_spec": ({"features": [[1, 2, 3]], "label": "x"}, "features", br.FEATURE_WIDTH,
                      {"feature_dim": 2, "input_kind": "features"}, {}, None),
    "nan": ('{"features": [[1, NaN]], "label": "x"}', "features", br.NON_FINITE, {}, {}, GOOD),
    "float32_overflow": ({"features": [[1e39, 0]], "label": "x"}, "features", br.NON_FINITE, {},
                         {}, GOOD),
    "length": ({"features": [[1, 2]], "length": 3, "label": "x"}, "length", br.LENGTH_MISMATCH,
               {}, {}, GOOD),
    "unknown_label": ({"features": [[1, 2]], "label": "z"}, "label", br.UNKNOWN_LABEL,
                      {"labels": ["x"]}, {}, GOOD),
    "missing_target": ({"features": [[1, 2]]}, "label/labels/tags", br.MISSING_TARGET, {}, {},
                       GOOD),
    "two_targets": ({"features": [[1, 2]], "label": "x", "labels": ["x"]}, "label/labels",
                    br.TARGET_FIELDS, {}, {}, GOOD),
    "tags_length": ({"features": [[1, 2], [3, 4]], "tags": ["x"]}, "tags", br.TAGS_LENGTH, {}, {},
                    {"features": [[1, 2]], "tags": ["x"]}),
    "too_long": ({"features": [[1, 2], [3, 4]], "label": "x"}, "features", br.TOO_LONG, {},
                 {"max_length": 1, "long_sequences": "reject"}, GOOD),
    "negative_weight": ({"features": [[1, 2]], "label": "x", "weight": -1}, "weight",
                        br.BAD_VALUE, {}, {}, GOOD),
    "bool_label": ({"features": [[1, 2]], "label": True}, "label", br.BAD_VALUE, {}, {}, GOOD),
    # Values the fast check of a plain grid of numbers must not let through (JSON true is 1.0
    # to numpy, "1.5" a float, null an error only numpy would report).
    "bool_value": ({"features": [[1.0, True]], "label": "x"}, "features", br.BAD_VALUE, {}, {}, GOOD),
    "string_value": ({"features": [[1.0, "1.5"]], "label": "x"}, "features", br.BAD_VALUE, {}, {}, GOOD),
    "null_value": ({"features": [[1.0, None]], "label": "x"}, "features", br.BAD_VALUE, {}, {}, GOOD),
    "nested_value": ({"features": [[1.0, [2.0]]], "label": "x"}, "features", br.BAD_VALUE, {}, {}, GOOD),
    "step_not_a_list": ({"features": [1.0, 2.0], "label": "x"}, "features", br.BAD_VALUE, {}, {}, GOOD),
    "empty_steps": ({"features": [[], []], "label": "x"}, "features", br.FEATURE_WIDTH, {}, {}, None),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_record_names_file_line_and_field(tmp_path, case):
    bad, field, kind, validator_kwargs, config_kwargs, first = CASES[case]
    path = write_jsonl(tmp_path / "d.jsonl", [first or GOOD, bad])
    validator = RecordValidator(DataConfig(**config_kwargs), **validator_kwargs)
    first_raw, bad_raw = read_records(path)
    if first is not None:
        validator(first_raw)
    with pytest.raises(br.BadRecordError) as info:
        validator(bad_raw)
    error = info.value
    assert (error.file, error.record_number, error.field, error.kind) == (path, 2, field, kind)
    assert f"{path}: line 2: field {field!r}" in str(error)


def test_a_grid_of_ints_and_floats_is_read_exactly(tmp_path):
    record = {"features": [[1, 2.5, -3], [4.25, 0, 1e-3]], "label": "x"}
    (raw,) = read_records(write_jsonl(tmp_path / "d.jsonl", [record]))
    example = RecordValidator(DataConfig())(raw)
    assert example.features.dtype.name == "float32"
    assert example.features.tolist() == [[1.0, 2.5, -3.0], [4.25, 0.0, float(np.float32(1e-3))]]


def test_csv_row_of_wrong_width(tmp_path):
    path = write_csv(tmp_path / "d.csv", ["text", "label"], [["a b", "x"], ["c", "x", "extra"]])
    raws = list(read_records(path))
    validator = RecordValidator(DataConfig())
    validator(raws[0])
    with pytest.raises(br.BadRecordError, match=r"d.csv: line 3: field '<record>'.*3 cells"):
        validator(raws[1])


def test_tfrecord_garbage_and_multi_value_step(tmp_path):
    path = write_tfrecord(tmp_path / "d.tfrecord", [
        sequence_example({"label": [b"x"]}, {"tokens": [[b"a"]]}),
        b"\xff\x00 not a proto",
        sequence_example({"label": [b"x"]}, {"tokens": [[b"a", b"b"]]}),
    ])
    raws = list(read_records(path))
    validator = RecordValidator(DataConfig())
    validator(raws[0])
    with pytest.raises(br.BadRecordError, match=r"d.tfrecord: record 2: field '<record>'"):
        validator(raws[1])
    with pytest.raises(br.BadRecordError, match=r"record 3: field 'tokens'.*2 values"):
        validator(raws[2])


def test_truncation_keeps_the_first_steps(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [
        {"features": [[1, 0], [2, 0], [3, 0]], "tags": ["a", "b", "c"], "length": 3}])
    [raw] = read_records(path)
    example = RecordValidator(DataConfig(max_length=2))(raw)
    assert example.truncated and example.features[:, 0].tolist() == [1, 2]
    assert example.tags == ("a", "b")


def _train_file_with_bad_records(tmp_path, n_good):
    records = dense_records(n_good, dim=2)
    bad = ['{"broken', {"features": [[1.0, 2.0], [3.0]], "label": "c0"},
           {"features": [[1.0, 2.0]], "label": "c0", "length": 5}, {"features": [[1.0, 2.0]]}]
    return write_jsonl(tmp_path / "train.jsonl", bad[:2] + records + bad[2:])


def test_skipped_records_are_counted_per_kind(tmp_path):
    train = _train_file_with_bad_records(tmp_path, 40)
    evaluation = write_jsonl(tmp_path / "eval.jsonl", dense_records(5) + [
        {"features": [[1.0, 2.0]], "label": "never-seen"}])
    config = DataConfig(train_data=train, eval_data=evaluation, skip_bad_records=True,
                        max_skipped_fraction=0.2)
    prepared = prepare_data(config, str(tmp_path / "model"), seed=0)
    assert prepared.splits["train"].num_records == 40
    assert prepared.splits["train"].skipped == {
        br.UNPARSEABLE: 1, br.RAGGED_FEATURES: 1, br.LENGTH_MISMATCH: 1, br.MISSING_TARGET: 1}
    assert prepared.splits["eval"].num_records == 5
    assert prepared.splits["eval"].skipped == {br.UNKNOWN_LABEL: 1}


def test_without_skipping_the_first_bad_record_stops_the_run(tmp_path):
    train = _train_file_with_bad_records(tmp_path, 40)
    with pytest.raises(br.BadRecordError, match=r"train.jsonl: line 1: field '<record>'"):
        prepare_data(DataConfig(train_data=train), str(tmp_path / "model"), seed=0)


def test_skipped_share_over_the_limit_stops_the_run(tmp_path):
    train = _train_file_with_bad_records(tmp_path, 16)  # 4 bad of 20 = 20%
    config = DataConfig(train_data=train, skip_bad_records=True, max_skipped_fraction=0.1)
    with pytest.raises(br.TooManyBadRecordsError) as info:
        prepare_data(config, str(tmp_path / "model"), seed=0)
    message = str(info.value)
    assert "skipped 4 of 20" in message
    assert "'unparseable': 1" in message and "'ragged_features': 1" in message


def test_a_chunk_validates_as_its_records_one_by_one(tmp_path):
    """Texts tokenized together give the tokens, errors and kind decisions of one record at a
    time: a bad record mid-chunk, a record whose kind the first record's fixed, odd spacing."""
    records = [{"text": "Hello, World!  again", "label": "x"}, {"text": 3, "label": "x"},
               {"tokens": ["a"], "label": "x"}, {"text": "ÄÖ über-all", "label": "y"},
               '{"text": "broken', {"text": "last one.", "label": "x"}]
    raws = list(read_records(write_jsonl(tmp_path / "d.jsonl", records)))
    one_by_one = []
    validator = RecordValidator(DataConfig())
    for raw in raws:
        try:
            one_by_one.append(validator(raw))
        except br.BadRecordError as error:
            one_by_one.append(error)
    chunked = RecordValidator(DataConfig()).validate_chunk(raws)

    def view(result):
        if isinstance(result, br.BadRecordError):
            return ("bad", result.record_number, result.field, result.kind)
        return ("ok", result.id, result.tokens, result.label)

    assert [view(r) for r in chunked] == [view(r) for r in one_by_one]
    assert [v[0] for v in map(view, chunked)] == ["ok", "bad", "bad", "ok", "bad", "ok"]
    assert chunked[0].tokens == ("hello", ",", "world", "!", "again")


def test_records_read_before_a_broken_file_are_checked_first():
    from data.prepare import _chunks

    def items():
        yield from (1, 2, 3)
        raise OSError("the file breaks off")

    seen = []
    with pytest.raises(OSError, match="breaks off"):
        for chunk in _chunks(items(), 2):
            seen.append(chunk)
    assert seen == [[1, 2], [3]]
