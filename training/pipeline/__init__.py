"""The artifact build's stages (``recsvc-train build``; the entry point is ``training/jobs/build.py``).

- :mod:`training.pipeline.staging`  the version name, a staging folder renamed into place only when complete,
                                    per-stage timing
- :mod:`training.pipeline.stages`   dataset checks, catalog copy, encoder export + item vectors, the transition
                                    prior, profile artifacts, the optional generative stages, the manifest
- :mod:`training.pipeline.push`     item vectors into a new Qdrant collection, alias swap
"""
