"""Tokenizer and token lookup: eager == inside tf.data.Dataset.map; id convention; assets."""

import collections

import pytest
import tensorflow as tf

from data.tokenizer import build_vocab, make_token_lookup, tokenize

TEXTS = ["Hello, World!", "  it's   3.5$ ", "ÉCOLE été", ""]
EXPECTED = [[b"hello", b",", b"world", b"!"], [b"it", b"'", b"s", b"3", b".", b"5", b"$"],
            ["école".encode(), "été".encode()], []]


def test_tokenize_eager_and_in_dataset_map_agree():
    assert tokenize(tf.constant(TEXTS)).to_list() == EXPECTED
    mapped = tf.data.Dataset.from_tensor_slices(TEXTS).batch(2).map(tokenize)
    assert [t for batch in mapped for t in batch.to_list()] == EXPECTED


def test_tokenize_can_keep_case():
    assert tokenize(tf.constant(["Ab cD"]), lowercase=False).to_list() == [[b"Ab", b"cD"]]


def test_lookup_ids_padding_vocab_then_oov(tmp_path):
    vocab = ["the", "cat"]
    lookup = make_token_lookup(vocab, num_oov_buckets=3)
    assert lookup.vocab_size == 1 + 2 + 3
    ids = lookup(tf.constant(["the", "cat", "unseen", "other"])).numpy().tolist()
    assert ids[:2] == [1, 2] and all(3 <= i <= 5 for i in ids[2:])
    ragged = lookup(tokenize(tf.constant(["The cat", "cat"])))
    assert ragged.to_list() == [[1, 2], [2]] and ragged.dtype == tf.int32

    def ids_in_map(text):
        return lookup(tokenize(text)).to_tensor()  # 0 pads

    mapped = next(iter(tf.data.Dataset.from_tensor_slices(["The cat", "cat"]).batch(2)
                       .map(ids_in_map)))
    assert mapped.numpy().tolist() == [[1, 2], [2, 0]]


@pytest.mark.parametrize("as_asset", [False, True])
def test_lookup_from_vocab_file_is_a_saved_model_asset(tmp_path, as_asset):
    vocab_path = str(tmp_path / "vocab.txt")
    with tf.io.gfile.GFile(vocab_path, "w") as f:
        f.write("the\ncat\n")

    class Serve(tf.Module):
        def __init__(self):
            super().__init__()
            vocab = tf.saved_model.Asset(vocab_path) if as_asset else vocab_path
            self.lookup = make_token_lookup(vocab, num_oov_buckets=1)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def __call__(self, text):
            return self.lookup(tokenize(text)).to_tensor()

    export_dir = str(tmp_path / "saved")
    tf.saved_model.save(Serve(), export_dir)
    tf.io.gfile.remove(vocab_path)  # the SavedModel must carry its own copy
    assert tf.io.gfile.exists(f"{export_dir}/assets/vocab.txt")
    loaded = tf.saved_model.load(export_dir)
    assert loaded(tf.constant(["cat the dog"])).numpy().tolist() == [[2, 1, 3]]


def test_build_vocab_order_min_count_and_cap():
    counts = collections.Counter({"b": 3, "a": 3, "c": 5, "rare": 1})
    assert build_vocab(counts) == ("c", "a", "b", "rare")
    assert build_vocab(counts, min_count=2) == ("c", "a", "b")
    assert build_vocab(counts, min_count=2, max_size=2) == ("c", "a")
