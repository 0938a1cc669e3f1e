"""Semantic IDs for a catalog: the RQ-VAE trained on frozen item vectors (optionally with a collaborative
part from the training sequences), codes + collision digits, and the written codec."""
