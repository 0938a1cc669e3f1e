"""Push an artifact set to Qdrant: its catalog with the text and seqrec vectors (as the service scores
them) into a new collection, then one alias swap; the previous collection is dropped after the swap."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from service.core.index import CatalogIndex, open_client
from service.core.manifest import Manifest
from service.core.seqrec import ColdIdRule, artifact_item_vectors, load_item_norm, load_text_projection
from training.config import BuildConfig
from training.data.loader import load_dataset

logger = logging.getLogger(__name__)


def push(root: Path, manifest: Manifest, cfg: BuildConfig) -> str:
    """Index the artifact set's catalog into a new collection and swap the alias."""
    dataset = load_dataset(root / "catalog", require_sequences=False, allow_empty_titles=True)
    text_vectors = np.load(root / manifest.items.text_vectors)
    seqrec_vectors = None
    if manifest.seqrec is not None:
        w, b = load_text_projection(root / manifest.seqrec.text_projection)
        ids = np.load(root / manifest.seqrec.id_embeddings)
        spec = manifest.seqrec
        rule = ColdIdRule(spec.cold_id_k, spec.cold_id_temperature, spec.cold_id_scale)
        norm = load_item_norm(root / manifest.seqrec.text_projection)
        seqrec_vectors = artifact_item_vectors(text_vectors, ids, w, b, rule, norm)  # what the service scores
    client = open_client(cfg.qdrant_url, cfg.qdrant_path)
    try:
        index = CatalogIndex(client, alias=cfg.collection_alias)
        new = index.build(
            dataset.items,
            text_vectors,
            seqrec_vectors,
            progress=True,
            metadata={"artifact_version": manifest.version},
        )
        old = index.swap_alias(new)
        if old is not None and old != new:
            index.drop(old)
        logger.info("alias %r -> %s (%d points)", cfg.collection_alias, new, len(dataset.items))
        return new
    finally:
        client.close()
