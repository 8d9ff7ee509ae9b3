"""Session fixtures for tests/export: two exports every test shares (~15 s each on 2 cores).
See export_testlib.py for what they hold."""

import pytest
import tensorflow as tf

from export_testlib import dense_spec, make_export, token_spec


@pytest.fixture(scope="session")
def dense_export(tmp_path_factory):
    return make_export(tmp_path_factory.mktemp("dense"), dense_spec(), quantize=True,
                       cell="lstm", hidden_units=32, input_keep_prob=0.9, state_keep_prob=0.8,
                       output_keep_prob=0.7, mask_per_example=True)


@pytest.fixture(scope="session")
def token_export(tmp_path_factory):
    return make_export(tmp_path_factory.mktemp("tokens"), token_spec(), quantize=False,
                       cell="gru", hidden_units=8, embedding_dim=6, bidirectional=True, pooling="mean",
                       ngram_orders=2, ngram_buckets=128, ngram_dim=4)


@pytest.fixture(scope="session")
def dense_loaded(dense_export):
    return tf.saved_model.load(str(dense_export.version_dir))


@pytest.fixture(scope="session")
def token_loaded(token_export):
    return tf.saved_model.load(str(token_export.version_dir))
