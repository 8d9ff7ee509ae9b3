"""Nothing lost, nothing cryptic: each kind of broken input file, written for real.

A broken record is a `BadRecordError` naming file, line and field (skippable); a file that cannot
be read to its end is a `DataFileError` naming the file (never skipped). Either way the message is
one line. The same cases through the command line are in tests/trainer/test_cli_bad_input.py.
"""

import gzip
import os

import pytest
import tensorflow as tf

from data_testlib import (dense_records, sequence_example, write_bytes, write_csv, write_jsonl,
                          write_tfrecord)
from data import bad_records as br
from data.config import DataConfig
from data.prepare import prepare_data
from data.readers import read_records
from data.records import RecordValidator

DEEP_JSON = '{"features": ' + "[" * 100_000 + "]" * 100_000 + ', "label": "c0"}'


def validate_all(path):
    """Validates every record of `path` with one validator; raises the first error."""
    validator = RecordValidator(DataConfig())
    return [validator(raw) for raw in read_records(path)]


def prepare(tmp_path, train, **config):
    return prepare_data(DataConfig(train_data=train, eval_fraction=0.0, **config),
                        str(tmp_path / "model"), seed=0)


def assert_one_line(error, *parts):
    message = str(error)
    assert "\n" not in message and "function_node" not in message, message
    for part in parts:
        assert part in message, message


# 1. JSON nested 100,000 levels deep ---------------------------------------------------------

def test_deeply_nested_json_is_an_unparseable_record(tmp_path):
    path = write_jsonl(tmp_path / "deep.jsonl", dense_records(2) + [DEEP_JSON] + dense_records(2))
    with pytest.raises(br.BadRecordError) as info:
        validate_all(path)
    error = info.value
    assert (error.file, error.record_number, error.field, error.kind) == (
        path, 3, br.WHOLE_RECORD, br.UNPARSEABLE)
    assert_one_line(error, f"{path}: line 3:", "nested too deeply")


def test_deeply_nested_json_is_skipped_and_counted(tmp_path):
    path = write_jsonl(tmp_path / "deep.jsonl", dense_records(10) + [DEEP_JSON] + dense_records(9))
    prepared = prepare(tmp_path, path, skip_bad_records=True, max_skipped_fraction=0.1)
    assert prepared.splits["train"].num_records == 19
    assert prepared.splits["train"].skipped == {br.UNPARSEABLE: 1}


# 2. One line that is not UTF-8 ----------------------------------------------------------------

def _lines_with_one_not_utf8(n_before, n_after, fmt="jsonl"):
    """Encoded lines of a file whose line n_before + 1 (+1 for the CSV header) has a 0xff byte."""
    if fmt == "csv":
        good = [b"text,label"] + [b"tok%d,x" % i for i in range(n_before)]
        bad, after = b"caf\xff,x", [b"more%d,y" % i for i in range(n_after)]
    else:
        good = [b'{"tokens": ["t%d"], "label": "x"}' % i for i in range(n_before)]
        bad = b'{"tokens": ["caf\xff"], "label": "x"}'
        after = [b'{"tokens": ["u%d"], "label": "y"}' % i for i in range(n_after)]
    return b"\n".join(good + [bad] + after) + b"\n"


@pytest.mark.parametrize("name,line", [("d.jsonl", 3), ("d.jsonl.gz", 3), ("d.csv", 4),
                                       ("d.tsv.gz", 4)])
def test_a_line_that_is_not_utf8_is_a_bad_record_with_its_line(tmp_path, name, line):
    data = _lines_with_one_not_utf8(2, 3, "jsonl" if ".json" in name else "csv")
    path = write_bytes(tmp_path / name, data.replace(b",", b"\t") if ".tsv" in name else data)
    with pytest.raises(br.BadRecordError) as info:
        validate_all(path)
    error = info.value
    assert (error.record_number, error.kind) == (line, br.UNPARSEABLE)
    assert_one_line(error, f"{path}: line {line}:", "not UTF-8", "byte 0xff")


@pytest.mark.parametrize("name", ["d.jsonl", "d.csv.gz"])
def test_a_line_that_is_not_utf8_is_skipped_and_the_rest_kept(tmp_path, name):
    path = write_bytes(tmp_path / name, _lines_with_one_not_utf8(
        30, 30, "jsonl" if ".json" in name else "csv"))
    prepared = prepare(tmp_path, path, skip_bad_records=True, max_skipped_fraction=0.05)
    assert prepared.splits["train"].num_records == 60
    assert prepared.splits["train"].skipped == {br.UNPARSEABLE: 1}


def test_gzip_data_without_a_gz_name_says_so(tmp_path):
    path = write_bytes(tmp_path / "d.jsonl", gzip.compress(b'{"tokens": ["a"], "label": "x"}\n'))
    with pytest.raises(br.BadRecordError) as info:
        validate_all(path)
    assert_one_line(info.value, f"{path}: line 1:", "looks gzip-compressed")


def test_csv_header_that_is_not_utf8_stops_reading(tmp_path):
    path = write_bytes(tmp_path / "d.csv", b"te\xffxt,label\na,x\n")
    with pytest.raises(br.DataFileError) as info:
        validate_all(path)
    assert_one_line(info.value, f"{path}: line 1: the header row is not UTF-8")


# 3. CSV quoting that runs over line ends ------------------------------------------------------

def _csv_lines(rows):
    return ("\n".join(["text,label"] + rows) + "\n").encode()


GOOD_ROWS = [f"word{i % 7} more,{'xy'[i % 2]}" for i in range(300)]


@pytest.mark.parametrize("skip", [False, True])
def test_unterminated_quote_stops_the_run_at_the_line_it_opened(tmp_path, skip):
    # Before: "skipped 1 of 100" and the 101 rows after the quote vanished into one cell.
    path = write_bytes(tmp_path / "d.csv",
                       _csv_lines(GOOD_ROWS[:98] + ['"never closed,x'] + GOOD_ROWS[:101]))
    with pytest.raises(br.DataFileError) as info:
        prepare(tmp_path, path, skip_bad_records=skip, max_skipped_fraction=0.5)
    assert info.value.line == 100
    assert_one_line(info.value, f"{path}: line 100: a quoted field", "never closed",
                    "end of the file (line 201)")


def test_quote_that_closes_rows_later_stops_the_run(tmp_path):
    # The stray quote on line 4 pairs with the opening quote of line 10's text field.
    rows = GOOD_ROWS[:2] + ['"stray,x'] + GOOD_ROWS[:5] + ['"quoted, text",y'] + GOOD_ROWS[:5]
    path = write_bytes(tmp_path / "d.csv", _csv_lines(rows))
    with pytest.raises(br.DataFileError) as info:
        prepare(tmp_path, path, skip_bad_records=True, max_skipped_fraction=0.5)
    assert_one_line(info.value, f"{path}: line 4: a quoted field", "to line 10",
                    "not valid CSV")


def test_quoted_line_breaks_and_one_line_quote_errors(tmp_path):
    # A quoted field with line breaks is valid CSV; a broken quote on one line is one bad row.
    path = write_csv(tmp_path / "d.csv", ["text", "label"],
                     [["two\nlines", "x"], ["plain", "y"]])
    with open(path, "a") as f:
        f.write('"ab"c,x\nafter,y\n')
    with pytest.raises(br.BadRecordError) as info:
        validate_all(path)
    assert (info.value.record_number, info.value.kind) == (5, br.UNPARSEABLE)
    assert_one_line(info.value, f"{path}: line 5:", "not valid CSV")
    prepared = prepare(tmp_path, path, skip_bad_records=True, max_skipped_fraction=0.5)
    assert prepared.splits["train"].num_records == 3  # "two\nlines", "plain", "after"
    assert prepared.splits["train"].skipped == {br.UNPARSEABLE: 1}



# 4. A directory that matches the data pattern ------------------------------------------------

@pytest.mark.parametrize("name", ["adir.jsonl", "adir.csv", "adir.tfrecord", "adir.jsonl.gz"])
def test_a_directory_matching_the_pattern_is_an_error(tmp_path, name):
    (tmp_path / name).mkdir()
    write_jsonl(tmp_path / "train.jsonl", dense_records(5))
    with pytest.raises(br.DataFileError) as info:
        prepare(tmp_path, f"{tmp_path}/*", skip_bad_records=True)
    assert_one_line(info.value, f"{tmp_path / name}: is a directory, not a data file",
                    f"{tmp_path / name}/*")


def test_an_empty_file_is_read_but_logged(tmp_path, caplog):
    empty = write_bytes(tmp_path / "a.jsonl", b"")
    write_jsonl(tmp_path / "b.jsonl", dense_records(5))
    with caplog.at_level("WARNING", logger="data.readers"):
        prepared = prepare(tmp_path, f"{tmp_path}/*.jsonl")
    assert prepared.splits["train"].num_records == 5
    assert f"{empty}: holds no records" in caplog.text


# 5. A file that cannot be read ----------------------------------------------------------------

def _deny(monkeypatch, denied):
    """Makes opening `denied` fail as a file without read permission does for a non-root user."""
    error = tf.errors.PermissionDeniedError(None, None, f"{denied}; Permission denied")
    real_gfile, real_dataset = tf.io.gfile.GFile, tf.data.TFRecordDataset

    def gfile(name, *args, **kwargs):
        if str(name) == denied:
            raise error
        return real_gfile(name, *args, **kwargs)

    class Dataset:  # TFRecordDataset opens the file on the first read
        def __init__(self, name, *args, **kwargs):
            self.name, self.dataset = name, real_dataset(name, *args, **kwargs)

        def as_numpy_iterator(self):
            if str(self.name) == denied:
                raise error
            return self.dataset.as_numpy_iterator()

    monkeypatch.setattr(tf.io.gfile, "GFile", gfile)
    monkeypatch.setattr(tf.data, "TFRecordDataset", Dataset)


@pytest.mark.parametrize("name", ["d.jsonl", "d.csv.gz", "d.tfrecord"])
def test_permission_denied_is_one_line_naming_the_file(tmp_path, monkeypatch, name):
    path = str(tmp_path / name)
    if "tfrecord" in name:
        write_tfrecord(path, [sequence_example({"label": [b"x"]}, {"tokens": [[b"a"]]})])
    elif "csv" in name:
        write_csv(path, ["text", "label"], [["a", "x"]])
    else:
        write_jsonl(path, dense_records(3))
    _deny(monkeypatch, path)
    with pytest.raises(br.DataFileError) as info:
        prepare(tmp_path, path, skip_bad_records=True)
    assert str(info.value) == f"{path}: cannot be read (permission denied)"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a chmod 000 file; the monkeypatched "
                    "test above covers the same code path")
def test_chmod_000_file(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", dense_records(3))
    os.chmod(path, 0)
    with pytest.raises(br.DataFileError) as info:
        prepare(tmp_path, path)
    assert str(info.value) == f"{path}: cannot be read (permission denied)"

# 6. Truncated or damaged gzip -------------------------------------------------------------------

def _gzip_of_records(n):
    return gzip.compress(b"".join(b'{"tokens": ["t%d", "u"], "label": "x"}\n' % i
                                  for i in range(n)))


@pytest.mark.parametrize("skip", [False, True])
def test_truncated_gzip_names_the_file_and_the_line_reached(tmp_path, skip):
    data = _gzip_of_records(2000)
    path = str(tmp_path / "d.jsonl.gz")
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(br.DataFileError) as info:
        prepare(tmp_path, path, skip_bad_records=skip)
    assert_one_line(info.value, f"{path}: truncated or damaged gzip file: it breaks off after "
                    "line ", "Compressed file ended")
    assert 0 < int(str(info.value).split("after line ")[1].split()[0]) < 2000


def test_damaged_gzip_and_not_gzip_data(tmp_path):
    damaged = tmp_path / "damaged.csv.gz"
    damaged.write_bytes(gzip.compress(b"text,label\n" + b"a b,x\n" * 100)[:-8] + bytes(8))
    with pytest.raises(br.DataFileError) as info:  # the trailer's checksum no longer matches
        validate_all(str(damaged))
    assert_one_line(info.value, f"{damaged}: truncated or damaged gzip file: it breaks off "
                    "after line 101", "CRC check failed")
    renamed = tmp_path / "plain.jsonl.gz"
    renamed.write_bytes(b'{"tokens": ["a"], "label": "x"}\n')
    with pytest.raises(br.DataFileError) as info:
        validate_all(str(renamed))
    assert_one_line(info.value, f"{renamed}: not gzip data")



# 7. Corrupt or truncated TFRecord files ---------------------------------------------------------

def _tfrecord_bytes(tmp_path, n, compressed=False):
    path = tmp_path / ("source.tfrecord" + (".gz" if compressed else ""))
    write_tfrecord(path, [sequence_example({"label": [b"x"]}, {"tokens": [[b"t%02d" % i]]})
                          for i in range(n)])  # every record of the same size
    return path.read_bytes()


def test_corrupt_tfrecord_is_one_line_with_the_offset(tmp_path):
    data = bytearray(_tfrecord_bytes(tmp_path, 10))
    data[len(data) // 2] ^= 0xFF
    path = write_bytes(tmp_path / "d.tfrecord", bytes(data))
    with pytest.raises(br.DataFileError) as info:
        prepare(tmp_path, path, skip_bad_records=True)
    assert_one_line(info.value, f"{path}: not a valid TFRecord file: corrupted record at offset ",
                    "good records")
    assert "Op:" not in str(info.value)


@pytest.mark.parametrize("kept,says", [(5, "it ends inside a record"),
                                        (20, "truncated record at offset")])
def test_truncated_tfrecord_is_not_read_as_fewer_records(tmp_path, kept, says):
    # 9 whole records and `kept` bytes of the 10th. Cut inside its 12-byte header, TF's reader
    # ends quietly as if the file held 9 records; cut inside its data, TF reports it.
    data = _tfrecord_bytes(tmp_path, 10)
    record = len(data) // 10  # all 10 records have the same size
    path = write_bytes(tmp_path / "cut.tfrecord", data[: 9 * record + kept])
    with pytest.raises(br.DataFileError) as info:
        validate_all(path)
    assert_one_line(info.value, f"{path}: not a valid TFRecord file: {says}",
                    "after 9 good records")


def test_junk_named_tfrecord_is_not_read_as_empty(tmp_path):
    junk = write_bytes(tmp_path / "junk.tfrecord", b'{"a": 1}\n')  # shorter than one header
    with pytest.raises(br.DataFileError) as info:
        validate_all(junk)
    assert_one_line(info.value, f"{junk}: not a valid TFRecord file: it ends inside a record",
                    "after 0 good records")


@pytest.mark.parametrize("compressed", [False, True])
def test_every_cut_of_a_tfrecord_file_is_reported(tmp_path, compressed):
    # TF's GZIP reader alone read 52 of 753 cuts of a 5 kB file as a shorter file, and cuts in
    # the gzip header as an empty one.
    data = _tfrecord_bytes(tmp_path, 4, compressed)
    record = len(_tfrecord_bytes(tmp_path, 1))
    path = str(tmp_path / ("cut.tfrecord" + (".gz" if compressed else "")))
    # Every cut of the short gzip file; of the plain one, every 5th and those around headers.
    cuts = set(range(1, len(data), 1 if compressed else 5))
    if not compressed:
        cuts |= {k * record + j for k in range(1, 4) for j in (-1, 0, 1, 11, 12, 13)}
    quiet = []
    for cut in sorted(cuts):
        with open(path, "wb") as f:
            f.write(data[:cut])
        try:
            quiet.append((cut, len(list(read_records(path)))))
        except br.DataFileError as error:
            assert_one_line(error, path)
    # Cut at a record boundary, an uncompressed file is a valid shorter file: nothing can tell.
    assert quiet == ([] if compressed else [(k * record, k) for k in range(1, 4)])


def test_truncated_gzip_tfrecord_and_gzip_without_gz_name(tmp_path):
    data = _tfrecord_bytes(tmp_path, 2000, compressed=True)
    cut = write_bytes(tmp_path / "cut.tfrecord.gz.part", data[: len(data) // 2])
    os.rename(cut, tmp_path / "cut.tfrecord.gz")  # write_bytes would gzip a .gz name again
    with pytest.raises(br.DataFileError) as info:
        validate_all(str(tmp_path / "cut.tfrecord.gz"))
    assert_one_line(info.value, "cut.tfrecord.gz: truncated or damaged gzip-compressed TFRecord")
    unnamed = write_bytes(tmp_path / "d.tfrecord", data)
    with pytest.raises(br.DataFileError) as info:
        validate_all(unnamed)
    assert_one_line(info.value, f"{unnamed}: not a valid TFRecord file", "looks gzip-compressed")
