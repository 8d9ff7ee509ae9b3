"""trainer.environment: every platform variable read in one place, with the meaning each has."""

import json

import pytest

from trainer import environment


def test_vertex_directories_and_job_detection():
    env = {"AIP_CHECKPOINT_DIR": "gs://b/ckpt", "AIP_MODEL_DIR": "gs://b/model",
           "AIP_TENSORBOARD_LOG_DIR": "gs://b/tb"}
    assert (environment.checkpoint_dir(env), environment.model_dir(env),
            environment.tensorboard_dir(env)) == ("gs://b/ckpt", "gs://b/model", "gs://b/tb")
    assert environment.in_vertex_job(env) and not environment.in_vertex_job({"AIP_CHECKPOINT_DIR": "x"})
    assert environment.model_dir({}) == "" and not environment.in_vertex_job({})


def test_tuning_trial_metric_tag():
    assert environment.hp_metric_tag("accuracy", {}) == "accuracy"
    assert environment.hp_metric_tag("accuracy", {"CLOUD_ML_HP_METRIC_TAG": "auc"}) == "auc"
    assert environment.in_tuning_trial({"CLOUD_ML_HP_METRIC_FILE": "/tmp/f"})
    assert not environment.in_tuning_trial({"AIP_MODEL_DIR": "x"})


def test_cluster_spec_becomes_tf_config_and_is_published_for_tensorflow():
    spec = {"cluster": {"workerpool0": ["a:1"], "workerpool1": ["b:2", "c:3"]},
            "task": {"type": "workerpool1", "index": 1}}
    env = {"CLUSTER_SPEC": json.dumps(spec)}
    expected = {"cluster": {"worker": ["a:1", "b:2", "c:3"]}, "task": {"type": "worker", "index": 2},
                "environment": "cloud"}
    assert environment.tf_config(env, publish=False) == expected and "TF_CONFIG" not in env
    assert environment.tf_config(env) == expected and json.loads(env["TF_CONFIG"]) == expected
    # A TF_CONFIG of its own wins over CLUSTER_SPEC; neither: no cluster.
    assert environment.tf_config({"TF_CONFIG": '{"cluster": {}}', "CLUSTER_SPEC": "{"}) == {"cluster": {}}
    assert environment.tf_config({}) is None


def test_tuner_role_follows_keras_tuner_variables():
    assert environment.tuner_role({}) == ""
    oracle = {"KERASTUNER_ORACLE_IP": "h", "KERASTUNER_ORACLE_PORT": "1"}
    assert environment.tuner_role({**oracle, "KERASTUNER_TUNER_ID": "chief"}) == "chief"
    assert environment.tuner_role({**oracle, "KERASTUNER_TUNER_ID": "tuner1"}) == "worker"
    with pytest.raises(RuntimeError, match="KERASTUNER_TUNER_ID"):
        environment.tuner_role(oracle)


def test_a_trial_process_gets_none_of_the_run_variables():
    env = {"PATH": "/bin", "TF_CONFIG": "{}", "AIP_MODEL_DIR": "m", "KERASTUNER_TUNER_ID": "chief",
           "CLOUD_ML_HP_METRIC_TAG": "acc", "HOME": "/root"}
    assert environment.without_run_variables(env) == {"PATH": "/bin", "HOME": "/root"}
