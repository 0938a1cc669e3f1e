"""Sequential recommenders: the model registry, building and fitting a model, its serving export,
the benchmark run loop and its JSON results store (``training/jobs/bench_seqrec.py`` is the entry point)."""
