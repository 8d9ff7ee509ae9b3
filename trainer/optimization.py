"""Optimizer and learning-rate schedule from a `TrainConfig`."""

from __future__ import annotations

import math

import keras
import tensorflow as tf


class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to `peak` over `warmup_steps`, then cosine, exponential or constant.

    Cosine decays to 0 at `total_steps`; exponential halves the rate every quarter of the run.
    Units: steps in, learning rate out (float32 scalar).
    """

    def __init__(self, peak: float, warmup_steps: int, total_steps: int, decay: str):
        self.peak = float(peak)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = max(int(total_steps), self.warmup_steps + 1)
        self.decay = decay

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warmup = tf.cast(max(self.warmup_steps, 1), tf.float32)
        warm = self.peak * tf.minimum(1.0, (step + 1.0) / warmup)
        progress = tf.clip_by_value(
            (step - self.warmup_steps) / float(self.total_steps - self.warmup_steps), 0.0, 1.0)
        if self.decay == "cosine":
            after = self.peak * 0.5 * (1.0 + tf.cos(math.pi * progress))
        elif self.decay == "exponential":
            after = self.peak * tf.pow(0.5, 4.0 * progress)
        else:
            after = tf.constant(self.peak)
        return tf.where(step < self.warmup_steps, warm, after)

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps,
                "total_steps": self.total_steps, "decay": self.decay}


def make_optimizer(train_config, total_steps: int) -> keras.optimizers.Optimizer:
    """Adam, AdamW or SGD with momentum, on a warm-up schedule; clipping is done by the step."""
    schedule = WarmupSchedule(train_config.learning_rate, train_config.warmup_steps, total_steps,
                              train_config.lr_schedule)
    if train_config.optimizer == "adam":
        return keras.optimizers.Adam(schedule)
    if train_config.optimizer == "adamw":
        return keras.optimizers.AdamW(schedule, weight_decay=train_config.weight_decay)
    return keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True)
