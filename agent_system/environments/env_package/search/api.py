"""The ``POST /retrieve`` wire format (SPEC §4), shared by the server and the HTTP client.

Request (JSON object), exactly one of ``query`` / ``queries``::

    {"query": "who wrote Hamlet", "topk": 3, "return_scores": true}
    {"queries": ["who wrote Hamlet", "capital of Peru"], "topk": 3, "return_scores": false}

``topk`` (1..MAX_TOPK, null = the server's ``--topk``) and ``return_scores`` (default false) are optional.
Response: ``{"result": [per_query, ...]}`` with one entry per query (one for the ``query`` form). With
``return_scores`` an entry is ``[{"document": {"id", "contents"}, "score": float}, ...]``; without it, a
plain list of documents ``[{"id", "contents"}, ...]`` — the shapes Search-R1 clients read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent_system.environments.env_package.search.corpus import Document
from agent_system.environments.env_package.search.retriever import Hit

MAX_TOPK = 100
MAX_QUERY_CHARS = 2048
MAX_BATCH = 1024
MAX_BODY_BYTES = 8 * MAX_QUERY_CHARS * MAX_BATCH  # generous for JSON escaping of the largest batch
_FIELDS = ("query", "queries", "topk", "return_scores")
_QUERY_SCHEMA = {"type": "string", "minLength": 1, "maxLength": MAX_QUERY_CHARS, "pattern": r"\S"}  # not blank
REQUEST_SCHEMA: dict[str, Any] = {  # the body as JSON Schema, for the server's OpenAPI document
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "query": _QUERY_SCHEMA,
        "queries": {"type": "array", "items": _QUERY_SCHEMA, "minItems": 1, "maxItems": MAX_BATCH},
        "topk": {"anyOf": [{"type": "integer", "minimum": 1, "maximum": MAX_TOPK}, {"type": "null"}]},
        "return_scores": {"type": "boolean", "default": False},
    },
    "oneOf": [{"required": ["query"]}, {"required": ["queries"]}],
}


class ApiError(ValueError):
    """A request the server rejects; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class RetrieveRequest:
    queries: list[str]
    topk: int
    return_scores: bool


def _check_query(query: Any, field: str) -> str:
    if not isinstance(query, str):
        raise ApiError(422, f"{field} must be a string, got {type(query).__name__}")
    if not query.strip():
        raise ApiError(422, f"{field} is empty; send the text to search for")
    if len(query) > MAX_QUERY_CHARS:
        raise ApiError(422, f"{field} has {len(query)} characters; the limit is {MAX_QUERY_CHARS}")
    return query


def parse_request(payload: Any, default_topk: int) -> RetrieveRequest:
    """Validate a decoded JSON body; raises :class:`ApiError` (4xx) naming the problem."""
    if not isinstance(payload, dict):
        raise ApiError(422, f"the body must be a JSON object with 'query' or 'queries', got {type(payload).__name__}")
    unknown = sorted(set(payload) - set(_FIELDS))
    if unknown:
        raise ApiError(422, f"unknown field(s) {unknown}; allowed: {list(_FIELDS)}")
    if ("query" in payload) == ("queries" in payload):
        raise ApiError(422, "send exactly one of 'query' (a string) or 'queries' (a list of strings)")
    if "query" in payload:
        queries = [_check_query(payload["query"], "query")]
    else:
        batch = payload["queries"]
        if not isinstance(batch, list):
            raise ApiError(422, f"queries must be a list of strings, got {type(batch).__name__}")
        if not 1 <= len(batch) <= MAX_BATCH:
            raise ApiError(422, f"queries holds {len(batch)} entries; send 1 to {MAX_BATCH}")
        queries = [_check_query(query, f"queries[{i}]") for i, query in enumerate(batch)]
    topk = payload.get("topk")
    if topk is None:
        topk = default_topk
    elif isinstance(topk, bool) or not isinstance(topk, int) or not 1 <= topk <= MAX_TOPK:
        raise ApiError(422, f"topk must be an integer from 1 to {MAX_TOPK} or null, got {topk!r}")
    return_scores = payload.get("return_scores", False)
    if not isinstance(return_scores, bool):
        raise ApiError(422, f"return_scores must be true or false, got {return_scores!r}")
    return RetrieveRequest(queries=queries, topk=topk, return_scores=return_scores)


def render_result(hits: list[list[Hit]], return_scores: bool) -> dict[str, Any]:
    """The response body for the hits of each query."""
    if return_scores:
        return {"result": [[{"document": hit.document, "score": hit.score} for hit in per_query] for per_query in hits]}
    return {"result": [[hit.document for hit in per_query] for per_query in hits]}


def parse_result(body: Any, num_queries: int) -> list[list[Document]]:
    """Documents per query from a response body of either shape; ValueError if it is malformed."""
    result = body.get("result") if isinstance(body, dict) else None
    if not isinstance(result, list) or len(result) != num_queries:
        raise ValueError(f"expected {{'result': [...]}} with {num_queries} entries, got {str(body)[:200]!r}")
    documents = []
    for per_query in result:
        if not isinstance(per_query, list):
            raise ValueError(f"each result entry must be a list of documents, got {str(per_query)[:200]!r}")
        docs = [item["document"] if isinstance(item, dict) and "document" in item else item for item in per_query]
        if not all(isinstance(doc, dict) and isinstance(doc.get("contents"), str) for doc in docs):
            raise ValueError(f"documents need a 'contents' string, got {str(per_query)[:200]!r}")
        documents.append(docs)
    return documents
