"""Admin routes (bearer token): reindex (validated before the 202, dry run), its job, cancel,
the collections behind the alias, and rollback."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse

from service.deps import AdminDep, StateDep
from service.schemas import (
    CollectionsOut,
    JobOut,
    ReindexAccepted,
    ReindexDryRun,
    ReindexRequest,
    RollbackOut,
    RollbackRequest,
)
from service.stores.jobs import Job

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[AdminDep])

_AUTH: dict[int | str, dict[str, Any]] = {401: {"description": "bad or missing token"}}
_REDIS: dict[int | str, dict[str, Any]] = {
    503: {"description": "Redis (reindex lease, job records) unreachable: `redis_unavailable`"}
}


def _job_out(job: Job) -> JobOut:
    return JobOut(
        job_id=job.id,
        status=job.status,
        stage=job.stage,
        progress=job.progress,
        started_at=job.started_at,
        finished_at=job.finished_at,
        collection=job.collection,
        error=job.error,
        stats=job.stats,
    )


@router.post(
    "/reindex",
    status_code=202,
    response_model=ReindexAccepted,
    summary="Re-embed the catalog into a new collection and swap the alias",
    description=(
        "The catalog (a name inside RECSVC_CATALOG_DIR) is read and validated before the 202: a bad path, "
        "a parse error (file and line named) or a catalog below the shrink guard answer 422 at once. "
        "`dry_run: true` answers 200 with the added/removed/changed counts and touches nothing."
    ),
    responses={
        200: {"model": ReindexDryRun, "description": "dry run: what the reindex would change"},
        409: {"description": "a reindex or rollback is already running"},
        422: {"description": "invalid_catalog_path, invalid_catalog or catalog_shrink"},
        **_AUTH,
        **_REDIS,
    },
)
async def start_reindex(state: StateDep, req: ReindexRequest | None = Body(default=None)) -> Any:
    req = req if req is not None else ReindexRequest()
    if req.dry_run:
        report = await state.reindex.dry_run(req.catalog_path, force=req.force)
        return JSONResponse(ReindexDryRun(**report).model_dump(), status_code=200)
    job_id = await state.reindex.start(req.catalog_path, force=req.force)
    return ReindexAccepted(job_id=job_id, status="queued")


@router.get(
    "/reindex/{job_id}",
    response_model=JobOut,
    summary="State of a reindex job",
    description="A job whose worker died reads `failed` with stage `abandoned` once its lease expired.",
    responses={404: {"description": "no such job"}, **_AUTH, **_REDIS},
)
async def get_reindex(job_id: str, state: StateDep) -> JobOut:
    return _job_out(await state.reindex.get(job_id))


@router.post(
    "/reindex/{job_id}/cancel",
    response_model=JobOut,
    summary="Cancel a queued or running reindex (on whichever worker runs it)",
    description=(
        "The job stops at its next step, drops its partial collection and ends `cancelled`; the served "
        "collection is untouched. Waits up to 10 s and answers the job's state (still `running` if it did "
        "not stop in time, e.g. in the middle of the alias swap)."
    ),
    responses={404: {"description": "no such job"}, 409: {"description": "the job already ended"}, **_AUTH, **_REDIS},
)
async def cancel_reindex(job_id: str, state: StateDep) -> JobOut:
    return _job_out(await state.reindex.cancel(job_id))


@router.get(
    "/collections",
    response_model=CollectionsOut,
    summary="Collections behind the alias: the served one and those kept for rollback",
    responses=_AUTH,
)
async def list_collections(state: StateDep) -> CollectionsOut:
    return CollectionsOut(**await asyncio.to_thread(state.reindex.collections_info))


@router.post(
    "/rollback",
    response_model=RollbackOut,
    summary="Move the alias back to a kept previous collection (atomically)",
    description=(
        "Default: the most recently retired collection; or name one of `GET /admin/collections`' kept ones. "
        "Other workers follow through the alias-moved message; semantic-ID tables follow the collection."
    ),
    responses={
        409: {"description": "rollback_unavailable (nothing kept, wrong target) or a reindex is running"},
        **_AUTH,
        **_REDIS,
    },
)
async def rollback(state: StateDep, req: RollbackRequest | None = Body(default=None)) -> RollbackOut:
    req = req if req is not None else RollbackRequest()
    return RollbackOut(**await state.reindex.rollback(req.collection))
