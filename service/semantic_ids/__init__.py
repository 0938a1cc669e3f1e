"""Semantic-ID decoding: prefix index (valid next codes per prefix), batched constrained
beam search on torch tensors, the plain trie-walk reference, and the T5 step adapter."""
