"""Responses serialised once, by orjson, straight from the domain objects.

Routes keep ``response_model=`` in their decorator (the OpenAPI schema documents the
shape) but return a :class:`FastJSONResponse`, which FastAPI sends as is: no second
pydantic validation of large float lists, no ``.tolist()`` of vector arrays (orjson
writes numpy arrays natively).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
from starlette.responses import JSONResponse

OPTIONS = orjson.OPT_SERIALIZE_NUMPY


def _default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def dumps(content: Any) -> bytes:
    return orjson.dumps(content, default=_default, option=OPTIONS)


class FastJSONResponse(JSONResponse):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps(content)
