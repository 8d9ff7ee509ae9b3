"""The prepared-shard format: one `tf.train.SequenceExample` per valid `Example`.

Context: `id` (bytes), `weight` (float), `length` (int64, T after truncation), and the target
as class strings: `label` (bytes) or `labels` (bytes list). Feature lists: `features` (a float
list of width D per step) or `tokens` (one bytes value per step, text already tokenized), and
`tags` (one bytes value per step). Classes stay strings here; `data.pipeline` maps them to ids
with the spec's label list, so a shard never disagrees with `labels.txt`.

Shards are uncompressed `.tfrecord` files; a `.tfrecord.gz` shard (what preparations wrote
before 2026-12-06) is read as gzip (`data.file_io.tfrecord_compression`).
"""

from __future__ import annotations

from typing import Dict

import numpy as np
import tensorflow as tf

from data.records import Example
from data.spec import DataSpec


def _bytes(values) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode("utf-8") for v in values]))


def _varint(value: int) -> bytes:
    """Protobuf's base-128 varint of a non-negative int."""
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        if not value:
            out.append(low)
            return bytes(out)
        out.append(low | 0x80)


def float_steps(features: np.ndarray) -> bytes:
    """The serialized `tf.train.FeatureList` of float32 [T, D] steps, one `FloatList` of D
    values per step: the bytes protobuf writes for it (tested), built with numpy in one go.

    Every step's message has the same size, so each is one fixed header (FeatureList.feature,
    Feature.float_list and the packed FloatList.value, each a field tag and a length) followed
    by its D little-endian float32s. It replaced adding the steps to a message one by one, which
    took a third of the preparation of dense data.
    """
    steps, width = features.shape
    payload = 4 * width
    value = b"\x0a" + _varint(payload)  # FloatList.value = 1, packed
    float_list = b"\x12" + _varint(len(value) + payload)  # Feature.float_list = 2
    feature = b"\x0a" + _varint(len(float_list) + len(value) + payload)  # FeatureList.feature = 1
    header = np.frombuffer(feature + float_list + value, np.uint8)
    rows = np.empty((steps, len(header) + payload), np.uint8)
    rows[:, :len(header)] = header
    rows[:, len(header):] = np.ascontiguousarray(features, "<f4").view(np.uint8).reshape(steps, payload)
    return rows.tobytes()


def serialize(example: Example) -> bytes:
    """`Example` -> serialized `tf.train.SequenceExample`."""
    context = {
        "id": _bytes([example.id]),
        "weight": tf.train.Feature(float_list=tf.train.FloatList(value=[example.weight])),
        "length": tf.train.Feature(int64_list=tf.train.Int64List(value=[example.length])),
    }
    if example.label is not None:
        context["label"] = _bytes([example.label])
    if example.labels is not None:
        context["labels"] = _bytes(example.labels)
    lists = {}
    if example.features is not None:
        lists["features"] = tf.train.FeatureList.FromString(float_steps(example.features))
    else:
        lists["tokens"] = tf.train.FeatureList(feature=[_bytes([t]) for t in example.tokens])
    if example.tags is not None:
        lists["tags"] = tf.train.FeatureList(feature=[_bytes([t]) for t in example.tags])
    return tf.train.SequenceExample(
        context=tf.train.Features(feature=context),
        feature_lists=tf.train.FeatureLists(feature_list=lists)).SerializeToString()


def deserialize(serialized: bytes) -> Example:
    """Inverse of `serialize`, in Python (used for the statistics pass)."""
    proto = tf.train.SequenceExample.FromString(serialized)
    context, lists = proto.context.feature, proto.feature_lists.feature_list

    def strings(feature):
        return tuple(v.decode("utf-8") for v in feature.bytes_list.value)

    example = Example(id=strings(context["id"])[0], weight=context["weight"].float_list.value[0])
    if "features" in lists:
        example.features = np.array([f.float_list.value for f in lists["features"].feature],
                                    dtype=np.float32)
    else:
        example.tokens = tuple(strings(f)[0] for f in lists["tokens"].feature)
    if "label" in context:
        example.label = strings(context["label"])[0]
    if "labels" in context:
        example.labels = strings(context["labels"])
    if "tags" in lists:
        example.tags = tuple(strings(f)[0] for f in lists["tags"].feature)
    return example


def parse_fn(spec: DataSpec, with_targets: bool = True):
    """A function for `tf.data.Dataset.map`: serialized shard record -> dict of tensors.

    Returns a function of a tf.string scalar giving: "features" float32 [T, D] or "tokens"
    tf.string [T]; "lengths" int32 []; "weight" float32 []; "id" tf.string []; and, when
    `with_targets`, the target as class strings: "label" tf.string [], "labels" tf.string [n]
    or "tags" tf.string [T].
    """
    context = {
        "id": tf.io.FixedLenFeature([], tf.string),
        "weight": tf.io.FixedLenFeature([], tf.float32, default_value=1.0),
        "length": tf.io.FixedLenFeature([], tf.int64),
    }
    sequence = {}
    if spec.input_kind == "features":
        sequence["features"] = tf.io.FixedLenSequenceFeature([spec.feature_dim], tf.float32)
    else:
        sequence["tokens"] = tf.io.FixedLenSequenceFeature([], tf.string)
    if with_targets:
        if spec.target_kind == "label":
            context["label"] = tf.io.FixedLenFeature([], tf.string)
        elif spec.target_kind == "labels":
            context["labels"] = tf.io.VarLenFeature(tf.string)
        else:
            sequence["tags"] = tf.io.FixedLenSequenceFeature([], tf.string)

    def parse(serialized: tf.Tensor) -> Dict[str, tf.Tensor]:
        ctx, seq = tf.io.parse_single_sequence_example(serialized, context, sequence)
        out = {"lengths": tf.cast(ctx["length"], tf.int32), "weight": ctx["weight"],
               "id": ctx["id"]}
        out.update(seq)
        if "label" in ctx:
            out["label"] = ctx["label"]
        if "labels" in ctx:
            out["labels"] = ctx["labels"].values
        return out

    return parse
