"""seqtrain: recurrent sequence classifiers for production, on TensorFlow 2.

The four top-level packages (`data`, `models`, `trainer`, `export`) are laid out the way a
Vertex AI custom-training Python package expects: `python -m trainer.task` is the entry point.
"""

from setuptools import find_packages, setup

setup(
    name="seqtrain",
    version="0.1.0",
    description="Train, export and serve recurrent sequence classifiers with TensorFlow 2",
    python_requires=">=3.10",
    packages=find_packages(include=["data", "data.*", "models", "models.*", "trainer", "trainer.*", "export", "export.*"]),
    package_data={"data.datasets": ["*/*.jsonl.gz", "*/*.md", "*/*.txt", "*/*.json"]},
    include_package_data=True,
    install_requires=[
        "tensorflow>=2.18,<2.22",
        "tensorflow-probability>=0.24",
        "keras-tuner>=1.4",
        "scipy",  # with scikit-learn: keras-tuner's Bayesian oracle (trainer.tune --tuner bayesian)
        "scikit-learn",
        "numpy",
        "orjson",  # JSON Lines parsing (data/formats_jsonl.py), 1.8x the standard library's speed on numbers
        "tensorboard",
        "pyyaml",
        "matplotlib",  # the run report's figures (export/figures.py, Agg: no display needed)
        # export/ writes and replays TF Serving warmup PredictionLogs. It pins the full
        # `tensorflow` wheel: next to tensorflow-cpu, install it with `pip install --no-deps`.
        "tensorflow-serving-api>=2.18,<2.22",
    ],
    extras_require={
        # aeon: tests/bench/test_real_data_smoke.py runs the bench's 1-NN DTW baseline.
        # pytest-xdist: pytest.ini runs the suite in two processes (-n 2).
        # onnx, onnxruntime: the ONNX export and its check (tests/export/test_onnx_export.py).
        "test": ["pytest", "pytest-xdist", "tf_keras", "ai-edge-litert", "cloudml-hypertune>=0.1.0.dev6", "aeon>=1.0",
                 "onnx>=1.15", "onnxruntime>=1.17"],
        # --export-formats ...,onnx: onnx writes the graph, onnxruntime checks it (no TensorFlow).
        "onnx": ["onnx>=1.15", "onnxruntime>=1.17"],
        # Vertex AI's own tuning service: trainer.train reports the objective with it.
        "hypertune": ["cloudml-hypertune>=0.1.0.dev6"],
        # bench/real_data.py's baselines: MiniROCKET and 1-NN DTW (aeon), k-mer and TF-IDF models.
        "bench": ["aeon>=1.0", "scikit-learn"],
        # bench/rnn_throughput.py's PyTorch row (bench/torch_peer.py); a CPU build of torch is
        # enough (and much smaller than the CUDA one): install that first where it matters.
        "bench-torch": ["torch>=2.1"],
    },
)
