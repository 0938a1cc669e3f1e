"""Python client of recsvc: ``RecsvcClient`` (sync) and ``AsyncRecsvcClient`` (asyncio) over httpx.

    from recsvc_client import RecsvcClient

    with RecsvcClient("http://127.0.0.1:8000") as rs:
        hits = rs.search("gentle shampoo", k=5)
        recs = rs.recommend([hits.items[0].item_id], k=10, filters={"price_max": 30})

Needs only httpx and the standard library (``pip install 'recsvc[client]'``); it never imports
the service or torch.
"""

from recsvc_client.client import AsyncRecsvcClient, RecsvcClient
from recsvc_client.errors import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitError,
    RecsvcConnectionError,
    RecsvcError,
    RecsvcTimeoutError,
    ServiceUnavailableError,
)
from recsvc_client.results import (
    Embeddings,
    EmbedResult,
    Filters,
    Health,
    Item,
    Mode,
    Readiness,
    RecommendResult,
    ReindexJob,
    SearchResult,
)
from recsvc_client.retry import RetryPolicy

__all__ = [
    "APIStatusError",
    "AsyncRecsvcClient",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "EmbedResult",
    "Embeddings",
    "Filters",
    "Health",
    "InternalServerError",
    "Item",
    "Mode",
    "NotFoundError",
    "PayloadTooLargeError",
    "RateLimitError",
    "Readiness",
    "RecommendResult",
    "RecsvcClient",
    "RecsvcConnectionError",
    "RecsvcError",
    "RecsvcTimeoutError",
    "ReindexJob",
    "RetryPolicy",
    "SearchResult",
    "ServiceUnavailableError",
]
