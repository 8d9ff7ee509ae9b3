"""The search space, the oracles and the cluster mapping, without training anything."""

import json

import keras_tuner
import pytest

from trainer import environment, task, tune, tuning_space
from trainer.config import Config


def test_default_space_declares_every_tuned_field_up_front():
    hp = tuning_space.declare(tuning_space.DEFAULT_SPACE)
    names = {p.name for p in hp.space}
    assert names == {"cell", "hidden_units", "num_layers", "bidirectional", "pooling", "input_keep_prob",
                     "state_keep_prob", "output_keep_prob", "learning_rate", "batch_size", "embedding_dim"}
    by_name = {p.name: p for p in hp.space}
    assert isinstance(by_name["num_layers"], keras_tuner.engine.hyperparameters.Int)
    assert by_name["learning_rate"].sampling == "log"
    assert isinstance(by_name["bidirectional"], keras_tuner.engine.hyperparameters.Boolean)


def test_space_file_yaml_and_json(tmp_path):
    (tmp_path / "s.yaml").write_text("hidden_units: {min: 8, max: 32, step: 8}\n"
                                     "output_keep_prob: {values: [0.5, 1]}\nnum_layers: 2\n")
    (tmp_path / "s.json").write_text(json.dumps({"cell": ["gru"], "learning_rate": {"min": 1e-3, "max": 1e-1}}))
    hp = tuning_space.declare(tuning_space.read_space(str(tmp_path / "s.yaml")))
    by_name = {p.name: p for p in hp.space}
    assert (by_name["hidden_units"].min_value, by_name["hidden_units"].max_value, by_name["hidden_units"].step) == (8, 32, 8)
    assert list(by_name["output_keep_prob"].values) == [0.5, 1.0]
    assert hp.values["num_layers"] == 2  # fixed
    hp = tuning_space.declare(tuning_space.read_space(str(tmp_path / "s.json")))
    assert {p.name for p in hp.space} == {"cell", "learning_rate"}


@pytest.mark.parametrize("space, message", [
    ({"hidden_unit": [4]}, "not a trainer flag"),
    ({"model_dir": ["a"]}, "set by the tuner"),
    ({"cell": {"min": 1, "max": 2}}, "choice list, not a range"),
    ({"hidden_units": {"max": 8}}, "needs min and max"),
    ({"cell": []}, "empty choice"),
    ({"hidden_units": [4.5]}, "expected an integer"),
    ({}, "empty"),
])
def test_bad_space_entries_are_named(space, message):
    with pytest.raises(ValueError, match=message):
        tuning_space.declare(space)


def test_apply_sets_values_rounds_grid_floats_and_validates():
    config = tuning_space.apply(Config(), {"cell": "gru", "batch_size": 16, "input_keep_prob": 0.7999999999999,
                                           "learning_rate": 0.01, "tuner/epochs": 3})
    assert (config.model.cell, config.data.batch_size, config.train.learning_rate) == ("gru", 16, 0.01)
    assert config.model.input_keep_prob == 0.8
    with pytest.raises(ValueError, match="keep probability"):
        tuning_space.apply(Config(), {"state_keep_prob": 0.0})


def test_flags_fix_values_and_leave_the_default_space(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({"model": {"cell": "gru"}}))
    fixed = tune.explicit_fields(["--hidden-units", "4", "--config", str(tmp_path / "c.json"), "--no-bidirectional"])
    assert fixed == ["bidirectional", "cell", "hidden_units"]
    space = tuning_space.without(tuning_space.DEFAULT_SPACE, fixed)
    assert not {"bidirectional", "cell", "hidden_units"} & set(space) and "pooling" in space


def test_direction():
    assert tune.direction_for("loss", "auto") == "min" and tune.direction_for("ece", "auto") == "min"
    assert tune.direction_for("accuracy", "auto") == "max" and tune.direction_for("loss", "max") == "max"


def _tuner(tmp_path, tuner_name):
    args, _ = tune.build_parser().parse_known_args(
        ["--tuner", tuner_name, "--max-trials", "6", "--max-epochs", "4", "--initial-points", "2"])
    base = task.parse_config(["--hidden-units", "4"])
    hp = tuning_space.declare(tune.search_space("", ["--hidden-units", "4"]))
    oracle = tune.make_oracle(args, "accuracy", hp, seed=1)
    return tune.TrainerTuner(oracle, base, "accuracy", directory=str(tmp_path), project_name="p")


@pytest.mark.filterwarnings("ignore:The optimal value found")  # sklearn's GP fit on 5 fake scores
def test_bayesian_oracle_proposes_valid_configs(tmp_path):
    pytest.importorskip("sklearn")
    tuner = _tuner(tmp_path, "bayesian")
    assert tuner.oracle.objective.direction == "max"
    seen = []
    for i in range(5):  # past --initial-points 2: the Gaussian process proposes the last three
        trial = tuner.oracle.create_trial("tuner0")
        seen.append(trial.hyperparameters.values)
        config = tuner.trial_config(trial)
        assert config.model.hidden_units == 4 and config.train.model_dir.endswith(f"trial_{trial.trial_id}/model")
        assert config.train.export_formats == ""  # only the retrained best is exported
        tuner.oracle.update_trial(trial.trial_id, {"accuracy": 0.1 * i})
        trial.status = "COMPLETED"
        tuner.oracle.end_trial(trial)
    assert tuner.oracle.get_best_trials(1)[0].score == pytest.approx(0.4)
    assert len({json.dumps(v, sort_keys=True) for v in seen}) == 5


def test_hyperband_budget_maps_to_epochs_and_warm_start(tmp_path):
    tuner = _tuner(tmp_path, "hyperband")
    trial = tuner.oracle.create_trial("tuner0")
    hp = trial.hyperparameters.values
    config = tuner.trial_config(trial)
    assert config.train.max_steps == 0 and config.train.num_epochs == hp["tuner/epochs"] - hp["tuner/initial_epoch"]
    assert config.train.warm_start_from == ""
    trial.hyperparameters.values.update({"tuner/trial_id": "0000", "tuner/initial_epoch": 2, "tuner/epochs": 4})
    config = tuner.trial_config(trial)
    assert config.train.num_epochs == 2 and config.train.warm_start_from.endswith("trial_0000/model")


@pytest.mark.parametrize("task_type, index, expected_id, expected_ip", [
    ("chief", 0, "chief", "0.0.0.0"), ("worker", 0, "tuner1", "chief-host"), ("worker", 1, "tuner2", "chief-host")])
def test_tf_config_maps_onto_kerastuner_variables(task_type, index, expected_id, expected_ip):
    env = {"TF_CONFIG": json.dumps({"cluster": {"chief": ["chief-host:2222"], "worker": ["w0:2222", "w1:2222"]},
                                    "task": {"type": task_type, "index": index}})}
    assert environment.set_kerastuner_env_from_tf_config(env)
    assert (env["KERASTUNER_TUNER_ID"], env["KERASTUNER_ORACLE_IP"], env["KERASTUNER_ORACLE_PORT"]) == (
        expected_id, expected_ip, "2222")


def test_single_task_or_explicit_kerastuner_env_is_left_alone():
    env = {"TF_CONFIG": json.dumps({"cluster": {"chief": ["h:1"]}, "task": {"type": "chief", "index": 0}})}
    assert not environment.set_kerastuner_env_from_tf_config(env) and "KERASTUNER_TUNER_ID" not in env
    env = {"KERASTUNER_ORACLE_IP": "x", "TF_CONFIG": "{}"}
    assert not environment.set_kerastuner_env_from_tf_config(env)


def test_task_tune_flag_delegates_to_the_tuner(capsys):
    with pytest.raises(SystemExit) as exit_info:
        task.main(["--tune", "--help"])
    assert exit_info.value.code == 0
    assert "--max-trials" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="max-trials must be >= 1"):
        task.main(["--tune", "--max-trials", "0"])
