"""trainer/: the training job. `task.py` parses flags into a `Config`; `train.py` owns the loop
(when to train, evaluate, checkpoint, stop, export); `steps.py` what one step does.

May import data/, models/ and export/ (the last only at the end of a run).
"""
