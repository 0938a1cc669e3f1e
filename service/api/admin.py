"""Admin routes (bearer token): start a reindex, query its job."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Body

from service.deps import AdminDep, StateDep
from service.schemas import JobOut, ReindexAccepted, ReindexRequest
from service.stores.jobs import Job

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[AdminDep])


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
    responses={409: {"description": "a reindex is already running"}, 401: {"description": "bad or missing token"}},
)
async def start_reindex(state: StateDep, req: ReindexRequest | None = Body(default=None)) -> ReindexAccepted:
    path = Path(req.catalog_path) if req is not None and req.catalog_path else None
    job_id = await state.reindex.start(path)
    return ReindexAccepted(job_id=job_id, status="queued")


@router.get("/reindex/{job_id}", response_model=JobOut, summary="State of a reindex job")
async def get_reindex(job_id: str, state: StateDep) -> JobOut:
    return _job_out(await state.reindex.get(job_id))
