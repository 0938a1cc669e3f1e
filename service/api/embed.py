"""POST /embed: item text -> vectors (through the dynamic batcher)."""

from __future__ import annotations

from fastapi import APIRouter

from service.deps import StateDep
from service.schemas import EmbedRequest, EmbedResponse, check_embed_limits

router = APIRouter(tags=["embed"])


@router.post("/embed", response_model=EmbedResponse, summary="Embed items given by their text")
async def embed(req: EmbedRequest, state: StateDep) -> EmbedResponse:
    check_embed_limits(req, state.settings.limits)
    texts = [it.encoder_text() for it in req.items]
    vectors = await state.embed(texts)  # [N, dim]
    state.metrics.embedded_texts.inc(len(texts))
    payloads = None
    if req.return_payload:
        payloads = []
        for it, text in zip(req.items, texts, strict=True):
            p = {k: v for k, v in it.to_item().payload().items() if k != "item_id"} if it.text is None else {}
            p["text"] = text
            payloads.append(p)
    return EmbedResponse(model=state.model_name, dim=int(vectors.shape[1]), vectors=vectors.tolist(), payloads=payloads)
