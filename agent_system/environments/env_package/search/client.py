"""Search backends used by the environment: the HTTP retrieval server or an in-process retriever.

``env.search.search_url`` is one URL, a list of URLs (env ``i`` uses URL ``i % len``), or
``local:<index dir>`` (an in-process retriever, no server; for the quickstart and tests).

The HTTP backend works with every Search-R1-style server. It sends a turn's queries as one batch
(``{"queries": [...]}``); a server that answers 400/422 to that takes one query per request
(``{"query": str, "topk", "return_scores"}``, the published Search-R1 form), so from then on the backend
sends single queries, ``env.search.concurrency`` at a time.

Failures never end a run by themselves: connection errors, timeouts (``env.search.timeout`` per request),
408/429 and 5xx answers are retried ``env.search.max_retries`` times, waiting ``retry_backoff * 2**attempt``
seconds in between; a query that still fails becomes a :class:`SearchFailure`, which the agent sees as an
error observation while its episode goes on, counted in ``search/errors``. Only a sustained outage — every
request to a URL failing for ``env.search.max_outage_s`` seconds — stops the run with a
:class:`RetrievalError` naming the URL. A request the server rejects in both forms (any other 4xx) or a
malformed answer is a client/server mismatch that retrying cannot fix: it stops the run at once.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal, Protocol

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
    max_outage_s: float = 600.0
    concurrency: int = 16

    def __post_init__(self) -> None:
        if not 1 <= self.topk <= MAX_TOPK:
            raise ValueError(f"env.search.topk={self.topk} must be from 1 to {MAX_TOPK}")
        if self.timeout <= 0:
            raise ValueError(f"env.search.timeout={self.timeout} must be > 0 seconds")
        if self.max_retries < 0 or self.retry_backoff < 0:
            raise ValueError("env.search.max_retries and env.search.retry_backoff must be >= 0")
        if self.max_outage_s < 0:
            raise ValueError(f"env.search.max_outage_s={self.max_outage_s} must be >= 0 seconds (0 = stop at the "
                             "first search that fails after its retries)")
        if self.concurrency < 1:
            raise ValueError(f"env.search.concurrency={self.concurrency} must be >= 1")


@dataclass(frozen=True)
class SearchFailure:
    """A query the backend could not answer after its retries; ``reason`` is the last error."""

    reason: str


SearchResult = list[Document] | SearchFailure


@dataclass
class SearchCounts:
    """Queries sent and queries failed since the last :meth:`take`."""

    queries: int = 0
    errors: int = 0

    def add(self, results: list[SearchResult]) -> None:
        self.queries += len(results)
        self.errors += sum(isinstance(result, SearchFailure) for result in results)

    def take(self) -> tuple[int, int]:
        taken = (self.queries, self.errors)
        self.queries = self.errors = 0
        return taken


class SearchBackend(Protocol):
    description: str
    counts: SearchCounts

    def search(self, queries: list[str]) -> list[SearchResult]:
        """The top-k documents for each query, or a :class:`SearchFailure`; raises :class:`RetrievalError`
        when the run must stop (a sustained outage, a request the server rejects)."""

    def close(self) -> None:
        """Release connections."""


class LocalSearchBackend:
    """Searches an in-process :class:`Retriever`."""

    def __init__(self, retriever: Retriever, settings: SearchSettings):
        self.retriever = retriever
        self.settings = settings
        self.description = f"{LOCAL_PREFIX}{retriever.index_path}"
        self.counts = SearchCounts()

    def search(self, queries: list[str]) -> list[SearchResult]:
        hits = self.retriever.search_batch(queries, self.settings.topk)
        results: list[SearchResult] = [[hit.document for hit in per_query] for per_query in hits]
        self.counts.add(results)
        return results

    def close(self) -> None:
        """Nothing to release: the retriever is shared (see ``shared_retriever``)."""


class _Rejected(Exception):
    """The server answered a 4xx that retrying cannot fix."""

    def __init__(self, status: int, text: str):
        super().__init__(f"HTTP {status}: {text}")
        self.status = status


RETRIED_STATUSES = (408, 429)  # and every 5xx
BATCH_REJECTED_STATUSES = (400, 422)  # a server that takes one query per request answers these to a batch


class HttpSearchBackend:
    """POSTs queries to one retrieval server, in batches or one by one (detected from its answers)."""

    def __init__(self, url: str, settings: SearchSettings):
        self.url = url
        self.settings = settings
        self.description = url
        self.counts = SearchCounts()
        self.form: Literal["batch", "single"] | None = None  # known after the server's first answer
        self._http = httpx.Client(timeout=settings.timeout)
        self._pool: ThreadPoolExecutor | None = None  # single-query requests in parallel
        self._lock = threading.Lock()
        self._failing_since: float | None = None  # start of the current run of failed requests

    def search(self, queries: list[str]) -> list[SearchResult]:
        # The server rejects over-long queries; cut them here so a rambling model cannot crash a rollout.
        queries = [query[:MAX_QUERY_CHARS] for query in queries]
        results: list[SearchResult] = []
        while len(results) < len(queries) and self.form != "single":
            batch = queries[len(results) : len(results) + MAX_BATCH]
            try:
                answered = self._request({"queries": batch}, len(batch))
            except _Rejected as rejected:
                if self.form == "batch" or rejected.status not in BATCH_REJECTED_STATUSES:
                    raise self._mismatch(rejected) from None
                self.form = "single"
                print(f"retrieval server {self.url} rejects batch requests ({rejected}); sending one query per "
                      f"request, {self.settings.concurrency} at a time", flush=True)
                break
            if not isinstance(answered[0], SearchFailure):
                self.form = "batch"
            results += answered
        if len(results) < len(queries):
            results += self._search_one_by_one(queries[len(results) :])
        self.counts.add(results)
        return results

    def _search_one_by_one(self, queries: list[str]) -> list[SearchResult]:
        def one(query: str) -> SearchResult:
            try:
                return self._request({"query": query}, 1)[0]
            except _Rejected as rejected:
                raise self._mismatch(rejected) from None

        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.settings.concurrency, thread_name_prefix="search-http")
        return list(self._pool.map(one, queries))

    def _request(self, payload: dict, num_queries: int) -> list[SearchResult]:
        """Documents per query, or ``num_queries`` failures once every attempt failed."""
        payload = {**payload, "topk": self.settings.topk, "return_scores": True}
        started = time.monotonic()
        attempts = self.settings.max_retries + 1
        for attempt in range(attempts):
            try:
                response = self._http.post(self.url, json=payload)
            except httpx.TransportError as error:
                failure = f"{type(error).__name__}: {error}"
            else:
                status = response.status_code
                if status < 400:
                    try:
                        documents: list[SearchResult] = list(parse_result(response.json(), num_queries))
                    except ValueError as error:
                        raise RetrievalError(f"retrieval server {self.url} sent a malformed answer: {error}") from None
                    self._succeeded()
                    return documents
                if status < 500 and status not in RETRIED_STATUSES:
                    raise _Rejected(status, response.text[:500])
                failure = f"HTTP {status}: {response.text[:200]}"
            if attempt + 1 < attempts:
                time.sleep(self.settings.retry_backoff * 2**attempt)
        self._failed(started, f"{failure} (after {attempts} attempt(s))")
        return [SearchFailure(failure)] * num_queries

    def _succeeded(self) -> None:
        with self._lock:
            if self._failing_since is not None:
                print(f"retrieval server {self.url} answers again", flush=True)
            self._failing_since = None

    def _failed(self, started: float, failure: str) -> None:
        """Note a request that failed every attempt; stop the run once the outage lasts too long."""
        with self._lock:
            if self._failing_since is None:
                self._failing_since = started
                print(f"retrieval server {self.url} failed a request: {failure}; the agent gets an error "
                      "observation and the episode goes on", flush=True)
            down_for = time.monotonic() - self._failing_since
        if down_for >= self.settings.max_outage_s:
            raise RetrievalError(
                f"retrieval server {self.url} failed every request for {down_for:.0f}s "
                f"(env.search.max_outage_s={self.settings.max_outage_s:g}); last error: {failure}. "
                f"Is it running? {START_SERVER_HINT}")

    def _mismatch(self, rejected: _Rejected) -> RetrievalError:
        return RetrievalError(f"retrieval server {self.url} rejected the request ({rejected}); check that it speaks "
                              "the Search-R1 protocol (docs/search.md) and the env.search settings")

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
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


SEARCH_FAILED_OBSERVATION = (
    "<information>The search engine did not answer, so no documents were retrieved for this query. "
    "Search again, or answer with what you know.</information>"
)


def format_information(result: SearchResult) -> str:
    """``<information>Doc 1: (Title: t) text\\nDoc 2: ...</information>`` for the model (an error text for a
    failed search)."""
    if isinstance(result, SearchFailure):
        return SEARCH_FAILED_OBSERVATION
    if not result:
        return "<information>No documents found.</information>"
    lines = []
    for number, document in enumerate(result, start=1):
        title, newline, text = document["contents"].partition("\n")
        title = title.strip().strip('"')
        lines.append(f"Doc {number}: (Title: {title}) {text.strip()}" if newline else f"Doc {number}: {title}")
    return "<information>" + "\n".join(lines) + "</information>"
