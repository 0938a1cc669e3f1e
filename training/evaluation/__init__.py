"""Evaluation protocols shared by the jobs: full-ranking ranks of a model with or without the
item -> next item prior, the prior's counted sequences, cold-item and short-history protocols."""
