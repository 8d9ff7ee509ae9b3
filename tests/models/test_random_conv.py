"""Random-convolution (MiniROCKET-style) features, models/random_conv.py: the kernels and
dilations MiniROCKET defines, biases fitted from data, padding invariance against the same
sequence alone, nothing trainable, and the weights in a checkpoint and in the model."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from models import build_model
from models.random_conv import (NUM_KERNELS, RandomConvFeatures, dilations_for, kernel_weights)
from models_testlib import make_batch, tiny_config, to_tensors


def _series(n=6, time_steps=80, dim=1, seed=0):
    rng = np.random.default_rng(seed)
    steps = rng.normal(size=(n, time_steps, dim)).cumsum(axis=1).astype(np.float32)
    lengths = rng.integers(time_steps // 3, time_steps + 1, n).astype(np.int32)
    lengths[0] = time_steps
    return steps, lengths


def test_kernels_and_dilations_are_minirockets():
    weights = kernel_weights()
    assert weights.shape == (9, 84) and NUM_KERNELS == 84
    # Every kernel sums to zero (6 x -1 + 3 x 2) and the 84 are the 84 choices of three taps.
    assert np.all(weights.sum(axis=0) == 0)
    taps = {tuple(np.flatnonzero(column == 2)) for column in weights.T}
    assert taps == set(itertools.combinations(range(9), 3))
    assert dilations_for(9) == (1,) and dilations_for(286) == (1, 2, 4, 8, 16, 32)
    assert dilations_for(2000) == (1, 2, 4, 8, 16, 32, 64, 128)


def test_convolution_is_the_dilated_sum_with_zero_padding():
    steps, lengths = _series(n=2, time_steps=40)
    layer = RandomConvFeatures(1, 40, num_features=168)
    layer.build()
    index = 2  # dilation 4
    out = layer._convolve(tf.constant(steps), index).numpy()  # [B, T, 84]
    padded = np.pad(steps[:, :, 0], [[0, 0], [16, 16]])
    weights = kernel_weights()
    for t in (0, 5, 39):
        window = padded[:, t + np.arange(9) * 4]  # x[t + (k - 4) * 4]
        np.testing.assert_allclose(out[:, t], window @ weights, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("dim,reference", [(1, 60), (3, 60), (1, 1000)])
def test_features_ignore_padding_and_match_each_sequence_alone(dim, reference):
    steps, lengths = _series(dim=dim)
    layer = RandomConvFeatures(dim, reference, num_features=500, seed=1)
    assert layer.position_stride == (4 if reference == 1000 else 1)  # every 4th step of long ones
    layer.adapt(steps, lengths)
    garbage = steps.copy()
    for i, length in enumerate(lengths):
        garbage[i, length:] = np.nan if i % 2 else 1e6
    batch = layer(tf.constant(garbage), tf.constant(lengths)).numpy()
    longer = np.concatenate([garbage, np.full((len(lengths), 17, dim), 5.0, np.float32)], axis=1)
    np.testing.assert_array_equal(layer(tf.constant(longer), tf.constant(lengths)).numpy(), batch)
    for i, length in enumerate(lengths):
        alone = layer(tf.constant(steps[i:i + 1, :length]), tf.constant(lengths[i:i + 1])).numpy()
        np.testing.assert_allclose(alone[0], batch[i], atol=1e-5)
    assert np.all(np.isfinite(batch))


def test_adapt_fits_biases_inside_the_data_and_standardises():
    steps, lengths = _series(n=32)
    layer = RandomConvFeatures(1, 80, num_features=1000, seed=0)
    layer.adapt(steps, lengths)
    biases = layer.biases.numpy()
    assert biases.shape == (len(layer.dilations), 84, layer.per_kernel)
    assert len(np.unique(biases)) > biases.size // 2  # quantiles, not a constant
    features = layer(tf.constant(steps), tf.constant(lengths)).numpy()
    scale = np.sqrt(64 / layer.output_size)
    # On the sample itself the features are standardised (then scaled): mean 0, std `scale`
    # wherever the PPV varies at all.
    np.testing.assert_allclose(features.mean(axis=0), 0.0, atol=1e-4)
    varying = layer.feature_std.numpy() != 1.0
    assert varying.mean() > 0.5
    np.testing.assert_allclose(features.std(axis=0)[varying], scale, rtol=1e-3)
    again = RandomConvFeatures(1, 80, num_features=1000, seed=0)
    again.adapt(steps, lengths)
    np.testing.assert_array_equal(again.biases.numpy(), biases)  # deterministic


@pytest.mark.slow  # adapts, checkpoints and restores a classifier
def test_a_classifier_with_random_features_trains_only_the_rest_and_restores(tmp_path):
    config = tiny_config("multiclass", pooling="mean", random_features=200, reference_length=40)
    model = build_model(config)
    assert model.random_features is not None
    assert not any("random_features" in v.path for v in model.trainable_variables)
    batch = make_batch(config, lengths=(40, 25, 31))
    model.adapt([to_tensors(batch)])
    fitted = model.random_features.biases.numpy()
    assert np.any(fitted != 0)
    prefix = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))
    twin = build_model(config)
    tf.train.Checkpoint(model=twin).restore(prefix).assert_existing_objects_matched()
    np.testing.assert_array_equal(twin.random_features.biases.numpy(), fitted)
    np.testing.assert_array_equal(twin(to_tensors(batch)).numpy(), model(to_tensors(batch)).numpy())
    # The head reads the pooled recurrence (4) and the features (84 x 3 dilations x 1 bias).
    assert model.head.dense.kernel.shape[0] == 4 + model.random_features.output_size


def test_token_and_tagging_models_get_no_random_features():
    assert build_model(tiny_config("multiclass", tokens=True, random_features=200,
                                   reference_length=40)).random_features is None
    assert build_model(tiny_config("tagging", random_features=200,
                                   reference_length=40)).random_features is None
