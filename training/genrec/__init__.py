"""The generative recommender (TIGER-style T5 over semantic-ID tokens): training data, fitting,
decoding with the served constrained beam search, evaluation, and its results rows.

- :mod:`training.genrec.data`      training examples and batches (plus the prior's training-time logit bias)
- :mod:`training.genrec.fit`       :func:`~training.genrec.fit.train_genrec`: fit, early-stop, test, save
- :mod:`training.genrec.decode`    top-k by the served beam search (``decode_scored`` also serves hybrid eval)
- :mod:`training.genrec.evaluate`  Recall/NDCG from decoded ranks; the item -> next prior beside the model
- :mod:`training.genrec.results`   the ``generative.json`` rows of a run

The model's modules are in :mod:`training.models.genrec`; the entry point is ``training/jobs/train_genrec.py``
(``recsvc-train bench-genrec``) and the results page section is rendered by :mod:`training.reports.generative`.
"""
