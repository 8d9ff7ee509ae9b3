"""The input formats' table: registration, lookup by suffix, and a format added from outside."""

import dataclasses

import pytest

from data_testlib import write_bytes
from data import bad_records as br
from data import formats
from data.config import DataConfig
from data.decode import FieldNames, decode
from data.prepare import prepare_data
from data.file_io import TextLines, open_bytes
from data.raw_record import RawRecord, bad_record
from data.readers import read_records
from data.records import RecordValidator


# A made-up format, written as a new format would be: its reader and decoder, using only
# data.file_io and data.raw_record, and one register_format call (in the fixture). Records are
# blocks of lines separated by blank lines: the label, then one token per line; they are
# numbered by block ("record"), which shows RawRecord.unit comes from the table.

def read_blocks(path, csv_delimiter=""):
    del csv_delimiter
    with open_bytes(path) as stream:
        block, number = [], 0
        for line in list(TextLines(path, stream)) + [""]:
            if line.strip():
                block.append(line.strip())
            elif block:
                number += 1
                yield RawRecord(path, number, "blocks", tuple(block))
                block = []


def decode_blocks(raw, names):
    del names
    label, *tokens = raw.payload
    if not tokens:
        raise bad_record(raw, "a block needs a label line and at least one token line")
    return {"label": label, "tokens": tokens}


BLOCKS = formats.InputFormat(name="blocks", suffixes=(".blocks",), read=read_blocks,
                             decode=decode_blocks, unit="record")


@pytest.fixture
def blocks_format():
    formats.register_format(BLOCKS)
    try:
        yield BLOCKS
    finally:
        del formats.INPUT_FORMATS[BLOCKS.name]


@pytest.mark.parametrize("name", ["d.blocks", "d.BLOCKS.gz"])
def test_a_registered_format_is_read_and_decoded_end_to_end(tmp_path, blocks_format, name):
    path = write_bytes(tmp_path / name, b"x\na\nb\n\n\n y \n c\n")
    raws = list(read_records(str(tmp_path / "d.*")))
    assert [(r.file, r.number, r.fmt, r.unit) for r in raws] == [
        (path, 1, "blocks", "record"), (path, 2, "blocks", "record")]
    assert [decode(r, FieldNames()) for r in raws] == [
        {"label": "x", "tokens": ["a", "b"]}, {"label": "y", "tokens": ["c"]}]
    validator = RecordValidator(DataConfig())
    examples = [validator(r) for r in raws]
    assert [(e.tokens, e.label, e.id) for e in examples] == [
        (("a", "b"), "x", f"{path}:1"), (("c",), "y", f"{path}:2")]


def test_a_registered_format_prepares_like_any_other(tmp_path, blocks_format):
    blocks = b"".join(b"c%d\nt%d\nt\n\n" % (i % 2, i) for i in range(12))
    train = write_bytes(tmp_path / "train.blocks", blocks)
    prepared = prepare_data(DataConfig(train_data=train, eval_fraction=0.25),
                            str(tmp_path / "model"), seed=0)
    assert prepared.splits["train"].num_records + prepared.splits["eval"].num_records == 12
    assert sorted(prepared.spec.labels) == ["c0", "c1"]


def test_a_registered_format_reports_bad_records_in_its_unit(tmp_path, blocks_format):
    path = write_bytes(tmp_path / "d.blocks", b"x\na\n\nlonely\n")
    raws = list(read_records(path))
    decode(raws[0], FieldNames())
    with pytest.raises(br.BadRecordError) as info:
        decode(raws[1], FieldNames())
    assert str(info.value).startswith(f"{path}: record 2: field '<record>': a block needs")
    assert info.value.unit == "record" and info.value.kind == br.UNPARSEABLE


def test_a_registered_format_is_gone_when_removed(tmp_path):
    assert "blocks" not in formats.INPUT_FORMATS  # the fixture above removed it
    with pytest.raises(ValueError, match="unknown file type"):
        formats.format_for_path("d.blocks")


def test_duplicate_name_raises():
    jsonl = formats.input_format("jsonl")
    before = dict(formats.INPUT_FORMATS)
    with pytest.raises(ValueError, match="input format 'jsonl' is already registered"):
        formats.register_format(dataclasses.replace(jsonl, suffixes=(".jsonl2",)))
    assert formats.INPUT_FORMATS == before


def test_duplicate_suffix_raises():
    before = dict(formats.INPUT_FORMATS)
    csv_again = dataclasses.replace(formats.input_format("csv"), name="csv2",
                                    suffixes=(".csv2", ".tsv"))
    with pytest.raises(ValueError, match="suffix '.tsv' is already used by 'csv'"):
        formats.register_format(csv_again)
    assert formats.INPUT_FORMATS == before  # nothing half-registered


@pytest.mark.parametrize("change,message", [
    ({"unit": "byte"}, "unit must be one of"),
    ({"suffixes": ()}, "has no file suffix"),
    ({"suffixes": (".Blocks",)}, "lower-case"),
    ({"suffixes": ("blocks",)}, "lower-case file name ending"),
    ({"suffixes": (".gz",)}, "not '.gz'"),
])
def test_malformed_entry_raises(change, message):
    with pytest.raises(ValueError, match=message):
        formats.register_format(dataclasses.replace(BLOCKS, **change))
    assert "blocks" not in formats.INPUT_FORMATS


def test_unknown_name_raises_listing_the_formats():
    with pytest.raises(ValueError, match=r"unknown input format 'parquet'; registered: \["):
        formats.input_format("parquet")
    with pytest.raises(ValueError, match="unknown input format 'parquet'"):
        decode(RawRecord("f", 1, "parquet", b""), FieldNames())


def test_unknown_suffix_is_one_line_naming_the_file(tmp_path):
    path = write_bytes(tmp_path / "train.parquet", b"PAR1")
    with pytest.raises(ValueError) as info:
        list(read_records(path))
    expected = (f"{path}: unknown file type; expected one of {list(formats.suffixes())} "
                "(optionally + .gz)")
    assert str(info.value) == expected
    assert "\n" not in expected and "'.jsonl'" in expected and "'.tfrecords'" in expected
    with pytest.raises(ValueError, match="unknown file type"):
        formats.format_for_path("train.jsonl.bz2")


def test_suffixes_listed_come_from_the_table(blocks_format):
    assert ".blocks" in formats.suffixes()
    with pytest.raises(ValueError, match="'.blocks'"):
        formats.format_for_path("train.parquet")


@pytest.mark.parametrize("fmt,suffix", [(f, s) for f in formats.INPUT_FORMATS.values()
                                        for s in f.suffixes])
def test_every_registered_suffix_selects_its_format(fmt, suffix):
    for path in (f"dir/x{suffix}", f"gs://b/x{suffix}.gz", f"X{suffix.upper()}",
                 f"x{suffix.upper()}.gz"):
        assert formats.format_for_path(path) is fmt, path


def test_builtin_formats_and_units():
    assert {f.name: (f.suffixes, f.unit) for f in formats.INPUT_FORMATS.values()} == {
        "jsonl": ((".jsonl", ".json"), "line"),
        "csv": ((".csv", ".tsv"), "line"),
        "tfrecord": ((".tfrecord", ".tfrecords"), "record"),
    }
