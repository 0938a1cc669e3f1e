"""POST /embed: item text -> vectors (through the dynamic batcher's bulk lane).

The response is serialised once by orjson from the vector array (``responses.py``);
``encoding: "base64"`` writes each vector as base64 of little-endian float32.
"""

from __future__ import annotations

import base64

import numpy as np
from fastapi import APIRouter

from service.api.responses import FastJSONResponse
from service.deps import StateDep
from service.encoding.batcher import BULK
from service.schemas import EmbedRequest, EmbedResponse, check_embed_limits

router = APIRouter(tags=["embed"])

LE_F32 = np.dtype("<f4")


def vectors_base64(vectors: np.ndarray) -> list[str]:
    """[N, D] -> N base64 strings of D little-endian float32 values."""
    rows = np.ascontiguousarray(vectors, dtype=LE_F32)  # [N, D]
    return [base64.b64encode(row.tobytes()).decode("ascii") for row in rows]


@router.post(
    "/embed",
    response_model=EmbedResponse,
    response_class=FastJSONResponse,
    summary="Embed items given by their text",
)
async def embed(req: EmbedRequest, state: StateDep) -> FastJSONResponse:
    check_embed_limits(req, state.settings.limits)
    texts = [it.encoder_text() for it in req.items]
    vectors = await state.embed(texts, lane=BULK)  # [N, dim]
    state.metrics.embedded_texts.inc(len(texts))
    payloads = None
    if req.return_payload:
        payloads = []
        for it, text in zip(req.items, texts, strict=True):
            p = {k: v for k, v in it.to_item().payload().items() if k != "item_id"} if it.text is None else {}
            p["text"] = text
            payloads.append(p)
    body = {
        "model": state.model_name,
        "dim": int(vectors.shape[1]),
        "encoding": req.encoding,
        "vectors": vectors_base64(vectors) if req.encoding == "base64" else np.ascontiguousarray(vectors),
        "payloads": payloads,
    }
    return FastJSONResponse(body)
