"""RecsvcClient / AsyncRecsvcClient against the real service (uvicorn on a loopback port, the tiny
real artifact set): every endpoint, typed results, typed errors with the service's body."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from recsvc_client import (
    AsyncRecsvcClient,
    AuthenticationError,
    BadRequestError,
    Item,
    NotFoundError,
    PayloadTooLargeError,
    RecsvcClient,
    RetryPolicy,
)
from service.core.items import item_from_dict, item_text
from service.encoding.fake import FakeEncoder
from tests.conftest import ADMIN_TOKEN, TEXT_DIM, TinyArtifacts, make_catalog, write_jsonl
from tests.live import live_service  # noqa: F401  (fixture)


@pytest.fixture
def base(live_service: Callable[..., str]) -> str:  # noqa: F811
    return live_service(limits={"max_k": 30})


def test_every_endpoint_sync(base: str, tiny_artifacts: TinyArtifacts, tmp_path: Path) -> None:
    with RecsvcClient(base, admin_token=ADMIN_TOKEN, timeout=30, retry=RetryPolicy(max_retries=1)) as rs:
        assert rs.health().status == "ok"
        ready = rs.ready()
        assert ready.ready and ready.checks["models"] and ready.model_version == tiny_artifacts.version

        emb = rs.embed(["bold red nail polish", {"title": "Gentle shampoo", "brand": "Acme"}], return_payload=True)
        assert emb.dim == TEXT_DIM and len(emb.vectors) == 2 and emb.payloads is not None
        expected = FakeEncoder(dim=TEXT_DIM).encode(["bold red nail polish"])[0]
        assert emb.vectors[0] == pytest.approx(expected.tolist(), abs=1e-6)

        oa = rs.embeddings(["bold red nail polish"], encoding_format="base64")
        assert oa.vectors[0] == pytest.approx(expected.tolist(), abs=1e-6) and oa.prompt_tokens == 4
        assert rs.embeddings("bold red nail polish").vectors[0] == pytest.approx(oa.vectors[0], abs=1e-6)

        hits = rs.search("Nails product bold", k=5, filters={"price_max": 40})
        assert len(hits.items) == 5 and isinstance(hits.items[0], Item)
        assert all(it.payload.get("price", 99) <= 40 for it in hits.items)
        like = rs.search(item_id=hits.items[0].item_id, k=3)
        assert hits.items[0].item_id not in [it.item_id for it in like.items]

        history = [it.item_id for it in hits.items[:2]]
        recs = rs.recommend(history, k=4, filters={"categories": ["Hair", "Skin"]})
        assert recs.mode == "dense" and len(recs.items) == 4 and not recs.cached
        assert not set(history) & {it.item_id for it in recs.items}
        assert all({"Hair", "Skin"} & set(it.payload["categories"]) for it in recs.items)
        assert rs.recommend(history, k=4, filters={"categories": ["Hair", "Skin"]}).cached
        new_item = rs.recommend([{"item": {"title": "Rose water facial toner"}}], k=2)
        assert len(new_item.items) == 2

        assert "recsvc_requests" in rs.metrics()

        new = make_catalog(2, seed=3, prefix="N")
        new[0]["title"] = "Sandalwood beard balm with argan oil"
        catalog = write_jsonl(tmp_path / "catalog.jsonl", tiny_artifacts.catalog + new)
        job_id = rs.start_reindex(str(catalog))
        job = rs.wait_reindex(job_id, timeout=120, poll_s=0.05)
        assert job.status == "succeeded" and job.collection and job.done
        assert rs.search("sandalwood beard balm", k=1).items[0].item_id == new[0]["item_id"]


def test_typed_errors_carry_the_service_body(base: str) -> None:
    rs = RecsvcClient(base, retry=RetryPolicy(max_retries=0))
    with pytest.raises(BadRequestError) as err:
        rs.recommend(["nope", "P0001"])
    e = err.value
    assert (e.status, e.code) == (422, "unknown_item") and e.details == {"unknown_ids": ["nope"]}
    assert "nope" in e.message and e.body["error"]["code"] == "unknown_item" and e.request_id
    with pytest.raises(PayloadTooLargeError) as big:
        rs.search("x", k=31)
    assert big.value.code == "limit_exceeded" and big.value.details["limit"] == 30
    with pytest.raises(AuthenticationError) as auth:
        rs.start_reindex()  # no token
    assert auth.value.code == "unauthorized"
    with pytest.raises(AuthenticationError):
        RecsvcClient(base, admin_token="wrong-token-0123456789").get_reindex("x")
    with pytest.raises(NotFoundError) as missing:
        RecsvcClient(base, admin_token=ADMIN_TOKEN).get_reindex("no-such-job")
    assert missing.value.code == "job_not_found"
    with pytest.raises(NotFoundError) as model:
        rs.embeddings("x", model="gpt")
    assert model.value.code == "model_not_found" and model.value.details == {
        "type": "not_found_error",
        "param": "model",
    }
    with pytest.raises(ValueError):
        rs.search()
    rs.close()


def test_async_client(base: str, tiny_artifacts: TinyArtifacts) -> None:
    first = tiny_artifacts.catalog[3]

    async def main() -> None:
        async with AsyncRecsvcClient(base, admin_token=ADMIN_TOKEN) as rs:
            assert (await rs.health()).status == "ok" and (await rs.ready()).ready
            hits = await rs.search(item_text(item_from_dict(first)), k=2)
            assert hits.items[0].item_id == first["item_id"]
            many = await asyncio.gather(*(rs.recommend([first["item_id"]], k=3) for _ in range(4)))
            assert len({tuple(it.item_id for it in r.items) for r in many}) == 1
            assert len((await rs.embed(["a b"])).vectors[0]) == TEXT_DIM
            assert len((await rs.embeddings(["a", "b"])).vectors) == 2
            with pytest.raises(BadRequestError):
                await rs.recommend([])
            job = await rs.wait_reindex(await rs.start_reindex(), timeout=120, poll_s=0.05)
            assert job.status == "succeeded"

    asyncio.run(main())
