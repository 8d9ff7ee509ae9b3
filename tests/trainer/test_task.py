"""Flag parsing: every config field is a flag, files and flags combine, unknown flags fail."""

import json
import logging
import os
import re
import subprocess
import sys

import pytest

from testlib import REPO_ROOT
from trainer import config as config_lib
from trainer.flags import build_parser, parse_config

README = REPO_ROOT / "README.md"


def test_flags_set_fields_in_every_section():
    config = parse_config(["--train-data", "a/*.jsonl", "--hidden-units", "17", "--learning-rate", "0.01",
                           "--no-bucketing", "--bidirectional", "--input-keep-prob", "0.8"])
    assert config.data.train_data == "a/*.jsonl"
    assert config.data.bucketing is False
    assert config.model.hidden_units == 17
    assert config.model.bidirectional is True
    assert config.model.input_keep_prob == 0.8
    assert config.train.learning_rate == 0.01


def test_defaults_are_the_dataclass_defaults():
    assert parse_config([]) == config_lib.Config()


def test_job_dir_is_an_alias_of_model_dir():
    assert parse_config(["--job-dir", "gs://bucket/run"]).train.model_dir == "gs://bucket/run"


def test_config_file_then_flags_override(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model:\n  cell: gru\n  hidden_units: 32\nbatch_size: 8\n")
    config = parse_config(["--config", str(path), "--hidden-units", "48"])
    assert config.model.cell == "gru"
    assert config.model.hidden_units == 48
    assert config.data.batch_size == 8


def test_json_config_file_and_unknown_field(tmp_path):
    good = tmp_path / "run.json"
    good.write_text(json.dumps({"train": {"max_steps": 7}}))
    assert parse_config(["--config", str(good)]).train.max_steps == 7
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"hiden_units": 7}))
    with pytest.raises(ValueError, match="hiden_units"):
        parse_config(["--config", str(bad)])


def test_yaml_config_is_safe_loaded(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("cell: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(Exception, match="constructor|python/object"):
        parse_config(["--config", str(path)])


def test_unknown_flag_is_an_error_outside_vertex(monkeypatch, capsys):
    for name in ("CLOUD_ML_JOB_ID", "CLOUD_ML_PROJECT_ID", "AIP_MODEL_DIR", "CLUSTER_SPEC"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SystemExit):
        parse_config(["--hiden-units", "3"])
    assert "hiden-units" in capsys.readouterr().err


def test_unknown_flag_is_ignored_inside_vertex(monkeypatch):
    monkeypatch.setenv("CLOUD_ML_JOB_ID", "123")
    config = parse_config(["--hidden-units", "3", "--service-added-flag", "x"])
    assert config.model.hidden_units == 3


def test_invalid_values_name_the_field():
    with pytest.raises(ValueError, match="input_keep_prob"):
        parse_config(["--input-keep-prob", "1.5"])


def test_readme_documents_every_flag():
    """The README's flag table lists every flag, and lists no flag the trainer does not have."""
    rows = [line for line in README.read_text().splitlines() if line.startswith("| `--")]
    documented = {flag for line in rows for flag in re.findall(r"`(--[a-z0-9-]+)", line)}
    flags = {"--" + field.name.replace("_", "-") for _, field in config_lib.flag_fields()}
    assert flags - documented == set(), "flags missing from README.md"
    known = {option for action in build_parser()._actions for option in action.option_strings}
    assert documented - known == set(), "README.md documents flags the trainer does not have"


def test_underscore_spellings_as_vertex_tuning_passes_them():
    config = parse_config(["--hidden_units", "12", "--input_keep_prob=0.7", "--learning-rate", "0.02"])
    assert config.model.hidden_units == 12
    assert config.model.input_keep_prob == 0.7
    assert config.train.learning_rate == 0.02


def test_jit_compile_auto_turns_xla_on_only_for_runs_long_enough_to_repay_compiling():
    from trainer.config import XLA_AUTO_MIN_TOKENS
    from trainer.schedule import use_xla

    assert parse_config([]).train.jit_compile == "auto"
    assert parse_config(["--jit-compile", "on"]).train.jit_compile == "on"
    assert config_lib.TrainConfig(jit_compile=True).jit_compile == "on"
    with pytest.raises(ValueError, match="jit_compile"):
        parse_config(["--jit-compile", "yes"])
    assert use_xla("auto", XLA_AUTO_MIN_TOKENS) is True
    assert use_xla("auto", XLA_AUTO_MIN_TOKENS - 1) is False
    assert use_xla("on", 1) is True and use_xla("off", 10**9) is False
    # Each compiled time length costs a compile: twice the shapes need twice the tokens.
    from trainer.config import XLA_AUTO_REFERENCE_SHAPES as shapes
    assert use_xla("auto", XLA_AUTO_MIN_TOKENS, 2 * shapes) is False
    assert use_xla("auto", 2 * XLA_AUTO_MIN_TOKENS, 2 * shapes) is True
    assert use_xla("auto", XLA_AUTO_MIN_TOKENS // shapes, 1) is True
    assert use_xla("auto", XLA_AUTO_MIN_TOKENS // shapes - 1, 1) is False


def test_num_epochs_zero_adapts_to_the_number_of_training_sequences():
    from trainer.config import AUTO_MIN_STEPS, TrainConfig
    from trainer.schedule import eval_period, training_steps

    assert parse_config([]).train.num_epochs == 0
    auto = TrainConfig()
    assert training_steps(TrainConfig(num_epochs=7), 100, 4) == 28
    assert training_steps(TrainConfig(max_steps=9, num_epochs=7), 100, 4) == 9
    assert training_steps(auto, 243, 8) == 1200            # the bundled set: 150 epochs of 8
    assert training_steps(auto, 1000, 32) == 38 * 32       # ceil(37500 / 1000) epochs
    assert training_steps(auto, 10**6, 31250) == 3 * 31250  # large sets: few passes
    assert training_steps(auto, 25, 1) == AUTO_MIN_STEPS    # tiny sets: a floor of steps
    # Tiny sets evaluate (and checkpoint) every few epochs, not after each one-step epoch.
    assert eval_period(1200, 8) == 8 and eval_period(1200, 1) == 8 and eval_period(90, 3) == 3


def test_auto_patience_is_a_fifth_of_the_planned_evaluations():
    from trainer.config import TrainConfig
    from trainer.schedule import patience_for

    assert TrainConfig().early_stopping_patience == -1
    assert patience_for(TrainConfig(), 26) == 6      # GeneFamilies' CV fold: 26 evaluations
    assert patience_for(TrainConfig(), 13) == 3      # GeneFamilies' test runs: 13 evaluations
    assert patience_for(TrainConfig(), 4) == 3       # at least 3
    assert patience_for(TrainConfig(), 150) == 30
    assert patience_for(TrainConfig(early_stopping_patience=0), 150) == 0
    assert patience_for(TrainConfig(early_stopping_patience=3), 150) == 3
    with pytest.raises(ValueError, match="early_stopping_patience"):
        TrainConfig(early_stopping_patience=-2)


@pytest.mark.slow  # 20,000 eager calls
def test_xla_compiles_a_bounded_set_of_lengths_whatever_the_data():
    from trainer.steps import compiled_length

    lengths = range(1, 20000)
    padded = [int(compiled_length(t)) for t in lengths]
    assert all(p >= t and p % 8 == 0 for t, p in zip(lengths, padded))
    assert all(p <= 1.25 * t for t, p in zip(lengths, padded) if t >= 32)  # padding <= 25%
    assert len(set(padded)) <= 45  # about 4 shapes per doubling, not one per multiple of 8
    assert [int(compiled_length(t)) for t in (7, 29, 63)] == [8, 32, 64]  # short: multiples of 8


def test_the_compiled_lengths_of_a_length_range_are_few_and_cover_it():
    from trainer.steps import compiled_lengths

    assert compiled_lengths(7, 26) == (8, 16, 24, 32)  # the bundled set's lengths
    dna = compiled_lengths(4000, 18921)  # GeneFamilies' longest bucket
    assert len(dna) <= 12 and dna[0] >= 4000 and dna[-1] >= 18921 and dna[-1] <= 1.25 * 18921
    assert compiled_lengths(5, 5) == (8,)


def _help_output() -> str:
    """`python -m trainer.task --help` in a fresh process, and whether it loaded TensorFlow."""
    code = ("import sys\nfrom trainer.task import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n"
            "    pass\nprint('TENSORFLOW LOADED' if 'tensorflow' in sys.modules else 'NO TENSORFLOW')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=README.parent)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_help_lists_every_flag_under_its_section_with_a_meaning_and_its_default():
    output = _help_output()
    assert output.rstrip().endswith("NO TENSORFLOW"), "--help imported TensorFlow"
    sections, current = {}, None
    for line in output.splitlines():
        match = re.match(r"^(data|model|train) flags:$", line)
        if match:
            current = match.group(1)
        elif current and re.match(r"^  --", line):
            sections.setdefault(current, []).append(line.split()[0].rstrip(","))
    docs = {section: config_lib.field_docs(cls) for section, cls in config_lib.section_classes().items()}
    actions = {option: action for action in build_parser()._actions for option in action.option_strings}
    for section, field in config_lib.flag_fields():
        flag = "--" + field.name.replace("_", "-")
        assert flag in sections.get(section, []), f"{flag} is not under '{section} flags:' in --help"
        assert docs[section].get(field.name), f"{field.name}: no meaning in the Attributes: block"
        meaning, _, default = actions[flag].help.rpartition(" (default: ")
        assert meaning.strip(), f"{flag}: empty meaning in --help"
        assert default.rstrip(")") not in ("", "None"), f"{flag}: no default in --help"
    assert "--hidden_units" not in output  # Vertex's underscore spelling is accepted, not listed


def test_field_docs_reads_shared_entries_and_continuation_lines():
    from data.config import DataConfig

    docs = config_lib.field_docs(DataConfig)
    assert docs["weight_field"] == docs["id_field"] == docs["length_field"] == "names of the optional fields."
    assert docs["eval_fraction"].endswith("(stated in the log).")  # continuation lines joined
    assert "\n" not in docs["num_buckets"]


def test_verbosity_comes_from_the_flag_or_the_environment(monkeypatch):
    from trainer.task import verbosity

    monkeypatch.delenv("SEQTRAIN_VERBOSITY", raising=False)
    assert verbosity([]) == "info"
    assert verbosity(["--verbosity", "debug"]) == "debug"
    assert verbosity(["--verbosity=warning"]) == "warning"
    monkeypatch.setenv("SEQTRAIN_VERBOSITY", "debug")
    assert verbosity([]) == "debug" and verbosity(["--verbosity", "info"]) == "info"
    with pytest.raises(ValueError, match="verbosity"):
        verbosity(["--verbosity", "loud"])
    assert parse_config(["--verbosity", "debug"]) == config_lib.Config()  # not a config field


@pytest.mark.slow  # two processes that import TensorFlow
def test_debug_verbosity_brings_tensorflow_logs_back():
    """Below debug the import-time C++ lines are caught; with it they reach stderr again."""
    code = ("import logging, os, sys\nfrom trainer import task\nlevel = task.verbosity(sys.argv[1:])\n"
            "task.configure_output(level)\ntask.import_tensorflow(level)\n"
            "print(os.environ['TF_CPP_MIN_LOG_LEVEL'], logging.getLogger('absl').level)\n")
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "SEQTRAIN_VERBOSITY")}
    quiet = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                           timeout=300, cwd=README.parent)
    loud = subprocess.run([sys.executable, "-c", code, "--verbosity", "debug"], capture_output=True,
                          text=True, env=env, timeout=300, cwd=README.parent)
    assert quiet.returncode == 0 and loud.returncode == 0, quiet.stderr[-2000:] + loud.stderr[-2000:]
    assert quiet.stdout.split() == ["3", str(logging.WARNING)]
    assert loud.stdout.split() == ["0", str(logging.INFO)]
    assert quiet.stderr == "", quiet.stderr
    # TensorFlow's own import lines; if a build stops printing them, stderr is merely empty.
    assert len(loud.stderr) >= len(quiet.stderr)


def test_sigint_interrupts_a_process_that_inherited_sigint_ignored():
    """A background job of a non-interactive shell (`cmd &` in a script, a CI runner) starts with
    SIGINT ignored, and Python then installs no KeyboardInterrupt handler: SIGINT was dropped and
    the run went on to exit 0. The command arms SIGINT itself: "interrupted", exit 130."""
    code = ("import os, signal, sys, time\n"
            "signal.signal(signal.SIGINT, signal.SIG_IGN)  # as inherited from `cmd &`\n"
            "from trainer import task\n"
            "def run(argv, level):\n"
            "    os.kill(os.getpid(), signal.SIGINT)\n"
            "    time.sleep(20)  # training, as far as the signal knows\n"
            "    return 0\n"
            "task._run = run\n"
            "sys.exit(task.main([]))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 130, (result.returncode, result.stderr[-2000:])
    assert result.stderr.rstrip().splitlines()[-1] == "interrupted"
    assert "Traceback" not in result.stderr
