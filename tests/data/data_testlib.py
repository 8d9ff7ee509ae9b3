"""Tiny literal data sets for the data/ tests, written in every supported format."""

import csv
import gzip
import io
import json

import tensorflow as tf


def write_bytes(path, data: bytes):
    """Writes through tf.io.gfile (works for ram:// too); gzips when path ends with .gz."""
    if str(path).endswith(".gz"):
        buffer = io.BytesIO()
        with gzip.GzipFile(fileobj=buffer, mode="wb") as f:
            f.write(data)
        data = buffer.getvalue()
    with tf.io.gfile.GFile(str(path), "wb") as f:
        f.write(data)
    return str(path)


def write_jsonl(path, records):
    """records: dicts (dumped as JSON) or str (written as the raw line)."""
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    return write_bytes(path, ("\n".join(lines) + "\n").encode("utf-8"))


def write_csv(path, header, rows, delimiter=","):
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return write_bytes(path, out.getvalue().encode("utf-8"))


def sequence_example(context=None, lists=None) -> bytes:
    """context: {name: list of bytes/int/float}; lists: {name: list of steps (list of values)}."""
    def feature(values):
        values = list(values)
        if values and isinstance(values[0], (bytes, str)):
            return tf.train.Feature(bytes_list=tf.train.BytesList(
                value=[v.encode() if isinstance(v, str) else v for v in values]))
        if values and isinstance(values[0], float):
            return tf.train.Feature(float_list=tf.train.FloatList(value=values))
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))

    return tf.train.SequenceExample(
        context=tf.train.Features(feature={k: feature(v) for k, v in (context or {}).items()}),
        feature_lists=tf.train.FeatureLists(feature_list={
            k: tf.train.FeatureList(feature=[feature(step) for step in steps])
            for k, steps in (lists or {}).items()})).SerializeToString()


def write_tfrecord(path, serialized):
    options = "GZIP" if str(path).endswith(".gz") else ""
    with tf.io.TFRecordWriter(str(path), options=options) as writer:
        for s in serialized:
            writer.write(s)
    return str(path)


def dense_records(n, dim=2, num_classes=3, first_id=0):
    """n dense records: id i, length 1 + i % 5, label "c<i % num_classes>", features i + step."""
    records = []
    for i in range(first_id, first_id + n):
        length = 1 + i % 5
        records.append({"id": f"r{i}", "label": f"c{i % num_classes}", "length": length,
                        "features": [[float(i) + t] + [0.5] * (dim - 1) for t in range(length)]})
    return records
