"""Helpers that tests import as `tests.helpers.<module>` (fixtures live in tests/conftest.py).

- analysis: synthetic runs that follow the MLflow contract, for the analysis tests
- checkout: the repository root, and the user's folders a test session may not change
- cli: running the entry points and `python -m` modules as a user would
- completions_server: an OpenAI-compatible completions server on a real HF model (vLLM's stand-in)
- data: data configs and source files with known defects
- fake_openai_server: a scriptable OpenAI API server, for the judges
- local_tokenizers: the tiny, LLaMA-style and byte-level family tokenizers, and the exact-mask check
- mlflow_server: free ports, and `mlflow server` / `mlflow ui` started and stopped
- models: the base a demo config trains from, and a fixed batch's loss
- runs: reading a test's MLflow runs, and the metrics every training run holds
- stats: item scores and run tables with known structure, for the statistics tests
"""
