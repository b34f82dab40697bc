"""The project's benchmarks: one script per figure (``bench/bench_<name>.py``, each runnable alone) and
``python -m bench``, which runs them all and writes docs/benchmarks.md."""
