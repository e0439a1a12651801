"""Search backends used by the environment: the HTTP retrieval server or an in-process retriever.

``env.search.search_url`` is one URL, a list of URLs (env ``i`` uses URL ``i % len``), or
``local:<index dir>`` (an in-process retriever, no server; for the quickstart and tests).
The HTTP backend sends each turn's queries in one batch request (``{"queries": [...]}``, also accepted by
Search-R1's original server), with a per-request ``timeout`` and ``max_retries`` retries after
connection errors, timeouts and 5xx answers, waiting ``retry_backoff * 2**attempt`` seconds between
attempts. It then fails with an error naming the URL and how to start the server; a 4xx answer fails at
once (a client/server mismatch that retrying cannot fix).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

import httpx

from agent_system.environments.env_package.search.api import MAX_BATCH, MAX_QUERY_CHARS, MAX_TOPK, parse_result
from agent_system.environments.env_package.search.corpus import Document
from agent_system.environments.env_package.search.retriever import Retriever, shared_retriever

LOCAL_PREFIX = "local:"
START_SERVER_HINT = (
    "start it with `python examples/search/retriever/retrieval_server.py --index_path <index dir> --port <port>` "
    "(see docs/search.md), or set env.search.search_url=local:<index dir> to search in-process"
)


class RetrievalError(RuntimeError):
    """The retrieval backend could not answer."""


@dataclass(frozen=True)
class SearchSettings:
    """The ``env.search`` knobs (SPEC §4)."""

    topk: int = 3
    timeout: float = 60.0
    max_retries: int = 3
    retry_backoff: float = 1.0

    def __post_init__(self) -> None:
        if not 1 <= self.topk <= MAX_TOPK:
            raise ValueError(f"env.search.topk={self.topk} must be from 1 to {MAX_TOPK}")
        if self.timeout <= 0:
            raise ValueError(f"env.search.timeout={self.timeout} must be > 0 seconds")
        if self.max_retries < 0 or self.retry_backoff < 0:
            raise ValueError("env.search.max_retries and env.search.retry_backoff must be >= 0")


class SearchBackend(Protocol):
    description: str

    def search(self, queries: list[str]) -> list[list[Document]]:
        """The top-k documents for each query."""

    def close(self) -> None:
        """Release connections."""


class LocalSearchBackend:
    """Searches an in-process :class:`Retriever`."""

    def __init__(self, retriever: Retriever, settings: SearchSettings):
        self.retriever = retriever
        self.settings = settings
        self.description = f"{LOCAL_PREFIX}{retriever.index_path}"

    def search(self, queries: list[str]) -> list[list[Document]]:
        hits = self.retriever.search_batch(queries, self.settings.topk)
        return [[hit.document for hit in per_query] for per_query in hits]

    def close(self) -> None:
        """Nothing to release: the retriever is shared (see ``shared_retriever``)."""


class HttpSearchBackend:
    """POSTs batches to one retrieval server."""

    def __init__(self, url: str, settings: SearchSettings):
        self.url = url
        self.settings = settings
        self.description = url
        self._http = httpx.Client(timeout=settings.timeout)

    def search(self, queries: list[str]) -> list[list[Document]]:
        # The server rejects over-long queries; cut them here so a rambling model cannot crash a rollout.
        queries = [query[:MAX_QUERY_CHARS] for query in queries]
        documents: list[list[Document]] = []
        for start in range(0, len(queries), MAX_BATCH):
            documents.extend(self._post(queries[start : start + MAX_BATCH]))
        return documents

    def _post(self, queries: list[str]) -> list[list[Document]]:
        payload = {"queries": queries, "topk": self.settings.topk, "return_scores": True}
        attempts = self.settings.max_retries + 1
        for attempt in range(attempts):
            try:
                response = self._http.post(self.url, json=payload)
            except httpx.TransportError as error:
                failure = f"{type(error).__name__}: {error}"
            else:
                if response.status_code < 400:
                    try:
                        return parse_result(response.json(), len(queries))
                    except ValueError as error:
                        raise RetrievalError(f"retrieval server {self.url} sent a malformed answer: {error}") from None
                if response.status_code < 500:
                    raise RetrievalError(
                        f"retrieval server {self.url} rejected the request (HTTP {response.status_code}): "
                        f"{response.text[:500]}"
                    )
                failure = f"HTTP {response.status_code}: {response.text[:200]}"
            if attempt + 1 < attempts:
                time.sleep(self.settings.retry_backoff * 2**attempt)
        raise RetrievalError(
            f"retrieval server {self.url} did not answer after {attempts} attempt(s) (last error: {failure}); "
            f"is it running? {START_SERVER_HINT}"
        )

    def close(self) -> None:
        self._http.close()


def make_backends(search_url: str | list[str], settings: SearchSettings) -> list[SearchBackend]:
    """One backend per configured URL (``local:<index dir>`` entries search in-process)."""
    urls = [search_url] if isinstance(search_url, str) else list(search_url)
    if not urls or not all(isinstance(url, str) and url.strip() for url in urls):
        raise ValueError(
            f"env.search.search_url={search_url!r} must be a URL, a list of URLs or local:<index dir>; "
            f"{START_SERVER_HINT}"
        )
    backends: list[SearchBackend] = []
    for url in urls:
        if url.startswith(LOCAL_PREFIX):
            backends.append(LocalSearchBackend(shared_retriever(url[len(LOCAL_PREFIX) :]), settings))
        elif url.startswith(("http://", "https://")):
            backends.append(HttpSearchBackend(url, settings))
        else:
            raise ValueError(f"env.search.search_url entry {url!r} must start with http://, https:// or local:")
    return backends


def format_information(documents: list[Document]) -> str:
    """``<information>Doc 1: (Title: t) text\\nDoc 2: ...</information>`` for the model."""
    if not documents:
        return "<information>No documents found.</information>"
    lines = []
    for number, document in enumerate(documents, start=1):
        title, newline, text = document["contents"].partition("\n")
        title = title.strip().strip('"')
        lines.append(f"Doc {number}: (Title: {title}) {text.strip()}" if newline else f"Doc {number}: {title}")
    return "<information>" + "\n".join(lines) + "</information>"
