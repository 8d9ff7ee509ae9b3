"""The run's configuration: three frozen dataclasses, one flag per field, one JSON file per run.

`Config` holds `data` (`data.config.DataConfig`), `model` (`models.config.ModelConfig`) and
`train` (`TrainConfig`, below). Every field that is not derived from the data becomes a
command-line flag named after it (`hidden_units` -> `--hidden-units`); a `--config` file (YAML or
JSON, either nested by section or flat) may set any field and flags override it. The resolved
config is written into the model dir as `config.json`, so every run can be reproduced.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
from typing import Any, Dict

from data.config import DataConfig
from models.config import ModelConfig

SECTIONS = ("data", "model", "train")
# Below this many real training steps (tokens: sequences x their lengths, over the whole run)
# XLA's compile time outweighs its speed-up on CPU. Measured on 2 cores: break-even near 35k
# sequences of the bundled data (median length 15), i.e. about half a million tokens, for its
# XLA_AUTO_REFERENCE_SHAPES compiled time lengths; the compile time grows with their number
# (about 2 s each there, 1.6 s each for the throughput workload's 10), so the threshold does.
XLA_AUTO_MIN_TOKENS = 500_000
XLA_AUTO_REFERENCE_SHAPES = 4
# num_epochs=0: show the model about this many sequences in all, in 3 to 150 passes. On the
# bundled data (243 training sequences) that is 150 epochs: in 2x5-fold cross-validation on its
# train split, held-out loss fell from 0.111 (60 epochs) to 0.085 (150) and 0.084 (300), errors
# from 21 to 15 and 17 of 540 (bench/japanese_vowels_results.md).
AUTO_EPOCH_SEQUENCES = 37_500
AUTO_MIN_EPOCHS = 3
AUTO_MAX_EPOCHS = 150
# ... and never fewer optimizer steps than this: 150 epochs of 28 sequences are 150 steps, far
# too few updates for a small set (in train-split CV on the development suite's small sets,
# bench/real_data_results.md). The bundled set's 150 epochs x 8 steps already meet it.
AUTO_MIN_STEPS = 1200
# early_stopping_patience=-1: stop after a fifth of the planned evaluations (at least 3) without
# a better hold-out value. On GeneFamilies (train-split CV, 26 planned evaluations) the hold-out
# loss was best at evaluation 5 and never again within the run's 26; the rest of the budget
# overfitted (bench/real_data_results.md, round 5). The longest stretch without a better loss
# that a later best ended, in every run of the suite with a hold-out, was 16% of the planned
# steps (4 evaluations of 47 steps on a CV fold); a fifth of the evaluations covers 20% or more.
# At least 3 (it was 5, which on a 13-evaluation run meant 38% of the budget: round 6). Runs
# without a hold-out never stop early.
AUTO_PATIENCE_FRACTION = 0.2
AUTO_MIN_PATIENCE = 3
CONFIG_FILE = "config.json"
# Metrics for which a smaller value is better (for early stopping, the best checkpoint and the
# tuner's objective); every other metric is better larger.
LOWER_IS_BETTER = ("loss", "ece", "expected_calibration_error")


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of eval metric `metric` is better."""
    return metric not in LOWER_IS_BETTER


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """When and how to train, evaluate, checkpoint and export.

    Attributes:
      model_dir: where checkpoints, summaries, assets and `config.json` go ("" = a fresh
        `runs/<timestamp>` folder). A model dir that already holds checkpoints is resumed.
      export_dir: where the SavedModel versions go ("" = `<model_dir>/export`).
      max_steps: stop after this many optimizer steps (0 = use `num_epochs`).
      num_epochs: passes over the training split when `max_steps` is 0; 0 = chosen from the
        number of training examples N: ceil(AUTO_EPOCH_SEQUENCES / N) clipped to
        [AUTO_MIN_EPOCHS, AUTO_MAX_EPOCHS] (small sets get more passes), and at least
        AUTO_MIN_STEPS optimizer steps, stated in the log.
      learning_rate: peak learning rate, reached after `warmup_steps`.
      optimizer: "adam", "adamw" or "sgd" (SGD with Nesterov momentum 0.9).
      weight_decay: decoupled weight decay for "adamw".
      lr_schedule: "cosine", "exponential" or "constant" after warm-up.
      warmup_steps: linear warm-up length in steps.
      clip_norm: global-norm gradient clipping (0 = off).
      grad_accum_steps: micro-batches whose gradients make one optimizer step (the effective
        batch is batch_size x replicas x grad_accum_steps).
      mixed_precision: "" (float32), "mixed_float16" (GPUs; dynamic loss scaling, overflowing
        steps skipped) or "mixed_bfloat16" (TPUs, recent GPUs and CPUs): the embedding and the
        recurrent encoder compute in 16 bits; variables, pooling, logits and losses stay
        float32, and the export is float32.
      eval_every_steps: evaluate every N steps (0 = once per epoch, or every few epochs when
        that would make more than `trainer.schedule.MAX_AUTO_EVALS` evaluations).
      save_checkpoints_steps: checkpoint every N steps (0 = at every evaluation).
      save_checkpoints_secs: also checkpoint when this many seconds passed since the last save
        (0 = off); checked between compiled chunks of at most `log_step_count_steps` steps.
      keep_checkpoint_max: checkpoints kept besides the best one.
      log_step_count_steps: steps between throughput logs and train summaries.
      early_stopping_metric: eval metric that picks the best checkpoint and stops training.
      early_stopping_patience: evaluations without improvement before stopping (0 = never
        stop); -1 = "auto": a fifth of the run's planned evaluations, at least
        `AUTO_MIN_PATIENCE` (`trainer.schedule.patience_for`), so a run that stopped improving on
        its hold-out ends instead of spending the rest of its budget overfitting.
      early_stopping_min_delta: the least change that counts as an improvement.
      warm_start_from: a checkpoint (file prefix or folder) of another run to initialise the
        model from before training; ignored when the model dir has its own checkpoint.
      warm_start_vars: regex; only model variables whose path matches are warm-started.
      collective_timeout_secs: multi-worker collectives fail after this long (a dead peer
        ends the job instead of hanging it).
      cpu_replicas: on a machine without a GPU, in a one-process job: replicas of the training
        step on the CPU's cores, each on an equal share of every batch (the global batch stays
        batch_size; only dropout masks are drawn per share). 0 = auto: as many as there are
        cores, while each share keeps at least 32 sequences and divides the batch (2 on 2 cores
        at batch 64: 1.3x the sequences/s of one); 1 = off. The choice is in the log.
      seed: seeds weights, shuffling, the validation hold-out and dropout masks.
      op_determinism: make every op deterministic (with `--deterministic` data order, a run
        and a killed-and-resumed run end bitwise equal; somewhat slower).
      jit_compile: compile the train step with XLA (time padded to a multiple of 8 and of a
        quarter of its octave, so it compiles a few shapes, about 4 per doubling of length):
        "on", "off" or "auto". On 2 CPU cores XLA gives ~3x the steps/s of the
        default model (~7x on long sequences) once compiled, but compiling costs ~8 s, so
        "auto" turns it on when the run will read at least `XLA_AUTO_MIN_TOKENS` real steps
        (steps x batch x median length) per `XLA_AUTO_REFERENCE_SHAPES` time lengths it
        compiles, and says so in the log.
      export_formats: comma-separated subset of "saved_model", "tflite", "onnx" (the TFLite and
        ONNX files go inside the SavedModel version folder; "" exports nothing; onnx needs the
        `onnx` extra).
      export_quantize: also write a dynamic-range quantized TFLite model (size and accuracy
        change are reported).
      export_mc_samples: Monte-Carlo dropout samples of the `uncertainty` serving signature.
    """

    model_dir: str = ""
    export_dir: str = ""
    max_steps: int = 0
    num_epochs: int = 0
    learning_rate: float = 3e-3
    optimizer: str = "adam"
    weight_decay: float = 1e-4
    lr_schedule: str = "cosine"
    warmup_steps: int = 20
    clip_norm: float = 1.0
    grad_accum_steps: int = 1
    mixed_precision: str = ""
    eval_every_steps: int = 0
    save_checkpoints_steps: int = 0
    save_checkpoints_secs: int = 0
    keep_checkpoint_max: int = 3
    log_step_count_steps: int = 50
    early_stopping_metric: str = "loss"
    early_stopping_patience: int = -1
    early_stopping_min_delta: float = 0.0
    warm_start_from: str = ""
    warm_start_vars: str = ".*"
    collective_timeout_secs: int = 300
    cpu_replicas: int = 0
    seed: int = 42
    op_determinism: bool = False
    jit_compile: str = "auto"
    export_formats: str = "saved_model,tflite"
    export_quantize: bool = False
    export_mc_samples: int = 20

    def __post_init__(self):
        if isinstance(self.jit_compile, bool):  # Python callers may say True/False
            object.__setattr__(self, "jit_compile", "on" if self.jit_compile else "off")
        if self.jit_compile not in ("auto", "on", "off"):
            raise ValueError(f"jit_compile must be auto, on or off, got {self.jit_compile!r}")
        if self.optimizer not in ("adam", "adamw", "sgd"):
            raise ValueError(f"optimizer must be adam, adamw or sgd, got {self.optimizer!r}")
        if self.lr_schedule not in ("cosine", "exponential", "constant"):
            raise ValueError(
                f"lr_schedule must be cosine, exponential or constant, got {self.lr_schedule!r}")
        if self.max_steps < 0 or self.num_epochs < 0:
            raise ValueError(f"max_steps and num_epochs must be >= 0 (got {self.max_steps}, {self.num_epochs})")
        if self.grad_accum_steps < 1:
            raise ValueError(f"grad_accum_steps must be >= 1, got {self.grad_accum_steps}")
        if self.cpu_replicas < 0:
            raise ValueError(f"cpu_replicas must be >= 0 (0 = auto), got {self.cpu_replicas}")
        if self.mixed_precision not in ("", "mixed_float16", "mixed_bfloat16"):
            raise ValueError(f"mixed_precision must be '', mixed_float16 or mixed_bfloat16, "
                             f"got {self.mixed_precision!r}")
        if self.early_stopping_patience < -1:
            raise ValueError(f"early_stopping_patience: expected >= 0 or -1 (auto), got "
                             f"{self.early_stopping_patience}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        from export.formats import check_formats  # the formats' table (imports TensorFlow)

        check_formats([f for f in self.export_formats.split(",") if f])
        if self.export_mc_samples < 1:
            raise ValueError(f"export_mc_samples must be >= 1, got {self.export_mc_samples}")


@dataclasses.dataclass(frozen=True)
class Config:
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)

    def to_dict(self) -> Dict[str, Any]:
        return {name: dataclasses.asdict(getattr(self, name)) for name in SECTIONS}

    def save(self, model_dir: str) -> None:
        import tensorflow as tf  # here, not at the top: flag parsing (--help) runs without TF

        tf.io.gfile.makedirs(model_dir)
        with tf.io.gfile.GFile(tf.io.gfile.join(model_dir, CONFIG_FILE), "w") as f:
            json.dump(self.to_dict(), f, indent=1, sort_keys=True)

    @classmethod
    def load(cls, model_dir: str) -> "Config":
        import tensorflow as tf

        with tf.io.gfile.GFile(tf.io.gfile.join(model_dir, CONFIG_FILE)) as f:
            return from_dict(json.load(f))


def read_mapping_file(path: str):
    """The value a YAML (.yaml/.yml, safe-loaded) or JSON file holds, read through tf.io.gfile."""
    import tensorflow as tf

    with tf.io.gfile.GFile(path) as f:
        text = f.read()
    if path.endswith((".yaml", ".yml")):
        import yaml  # imported here: only config and search-space files need it

        return yaml.safe_load(text)
    return json.loads(text)


def section_classes():
    return {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}


def flag_fields():
    """(section, dataclass field) for every field that is a user-settable flag.

    Raises ValueError if two sections use one name: every field must be its own flag.
    """
    seen = {}
    fields = []
    for section, cls in section_classes().items():
        for field in dataclasses.fields(cls):
            if field.name in seen:
                raise ValueError(f"config field {field.name!r} is in both {seen[field.name]!r} and {section!r}")
            seen[field.name] = section
            if not field.metadata.get("derived", False):
                fields.append((section, field))
    return fields


# "  name: meaning" or "  a, b, c: shared meaning" inside an "Attributes...:" block.
_ENTRY = re.compile(r"^(\s*)([a-z_][a-z0-9_]*(?:,\s*[a-z_][a-z0-9_]*)*):\s*(.*)$")


def field_docs(cls) -> Dict[str, str]:
    """{field name: its one-paragraph meaning} from the "Attributes:" blocks of `cls`'s docstring.

    An entry may name several fields ("weight_field, id_field, length_field: ..."); its text is
    every line indented deeper than the name, joined into one line. `--help` and the README's
    flag table show these texts.
    """
    docs: Dict[str, str] = {}
    names, indent, in_block = (), None, False
    for line in inspect.cleandoc(cls.__doc__ or "").splitlines():
        stripped = line.strip()
        if stripped.startswith("Attributes") and stripped.endswith(":"):
            in_block, indent, names = True, None, ()
            continue
        if not in_block:
            continue
        if not stripped:
            continue
        depth = len(line) - len(line.lstrip())
        match = _ENTRY.match(line)
        if match and (indent is None or depth == indent):
            indent = depth
            names = tuple(name.strip() for name in match.group(2).split(","))
            for name in names:
                docs[name] = match.group(3).strip()
        elif indent is not None and depth > indent:
            for name in names:
                docs[name] = (docs[name] + " " + stripped).strip()
        else:  # back at or above the block's indentation: the block ended
            in_block, names = False, ()
    return docs


def from_dict(values: Dict[str, Any]) -> Config:
    """Builds a Config from a nested ({"model": {...}}) or flat ({"hidden_units": 64}) dict."""
    by_section: Dict[str, Dict[str, Any]] = {name: {} for name in SECTIONS}
    owner = {}
    for section, cls in section_classes().items():
        for field in dataclasses.fields(cls):
            owner[field.name] = (section, field)
    for key, value in values.items():
        if key in SECTIONS and isinstance(value, dict):
            for inner_key, inner_value in value.items():
                _put(by_section, owner, inner_key, inner_value, expected_section=key)
        else:
            _put(by_section, owner, key, value)
    return Config(**{name: section_classes()[name](**by_section[name]) for name in SECTIONS})


def _put(by_section, owner, key, value, expected_section=None):
    name = key.replace("-", "_")
    if name not in owner:
        raise ValueError(f"unknown config field {key!r}")
    section, field = owner[name]
    if expected_section is not None and section != expected_section:
        raise ValueError(f"config field {key!r} belongs to section {section!r}, not {expected_section!r}")
    if isinstance(value, list):
        value = tuple(value)
    by_section[section][name] = value
