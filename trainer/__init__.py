"""trainer/: the training job. `task.py` is the command (console, exit codes) and `flags.py`
turns flags into a `Config`; `train.py` owns the loop (*when* to train, evaluate, checkpoint,
stop, export), `actions.py` *what* happens then (best keeping, early stopping, saves, the NaN
check), `schedule.py` how long and how often, `steps.py` what one step does, `environment.py`
reads every platform variable (Vertex AI, TF_CONFIG, keras-tuner).

May import data/, models/ and export/ (the last only at the end of a run).
"""
