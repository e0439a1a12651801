"""Server-side micro-batching: concurrent requests are searched together in one retriever call.

Search-R1-style clients send one query per request. Encoding those queries one by one wastes the
encoder (a forward pass over 8 short queries costs little more than over one), and a lock held over a
whole encode + search makes the server slower the more clients it has. :class:`MicroBatcher` instead
queues every request; one consumer task takes what is queued (after waiting up to ``max_wait_s`` for
more requests to join the first), searches it with one retriever call per distinct ``topk`` in a worker
thread, and hands every request its own slice of the results. While a batch is being searched, new
requests queue up and form the next one, so the batch size follows the load: one client gets
single-query batches, eight clients get batches of about eight.

A batch answers each query exactly as a search of that query alone would (the retrievers score every
query of a batch independently; tested), so batching changes the speed, never the result.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from agent_system.environments.env_package.search.retriever import Hit

SearchFn = Callable[[list[str], int], list[list[Hit]]]


@dataclass
class _Request:
    queries: list[str]
    topk: int
    answer: asyncio.Future


class MicroBatcher:
    """Gathers concurrent ``search(queries, topk)`` calls into batched ``search_fn`` calls.

    Use inside one running event loop: ``start()`` before the first search, ``stop()`` at shutdown.
    ``max_queries`` bounds the queries of one batch (a single larger request still goes alone).
    """

    def __init__(self, search_fn: SearchFn, *, max_wait_s: float = 0.002, max_queries: int = 1024):
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s={max_wait_s} must be >= 0 seconds")
        if max_queries < 1:
            raise ValueError(f"max_queries={max_queries} must be >= 1")
        self.search_fn = search_fn
        self.max_wait_s = max_wait_s
        self.max_queries = max_queries
        self.batches = 0  # search batches run so far (for tests and the health endpoint)
        self._pending: deque[_Request] = deque()
        self._arrived: asyncio.Event | None = None
        self._consumer: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        if self._consumer is not None:
            raise RuntimeError("MicroBatcher.start called twice")
        self._arrived = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="search-batch")
        self._consumer = asyncio.create_task(self._consume())

    async def stop(self) -> None:
        """Cancel the consumer; queued requests fail with ``CancelledError``."""
        if self._consumer is None:
            return
        self._consumer.cancel()
        try:
            await self._consumer
        except asyncio.CancelledError:
            pass
        for request in self._pending:
            request.answer.cancel()
        self._pending.clear()
        self._executor.shutdown(wait=True)
        self._consumer = None

    async def search(self, queries: list[str], topk: int) -> list[list[Hit]]:
        """The hits of each query, as ``search_fn(queries, topk)`` would return them."""
        if self._consumer is None:
            raise RuntimeError("MicroBatcher.search before start()")
        answer = asyncio.get_running_loop().create_future()
        self._pending.append(_Request(list(queries), topk, answer))
        self._arrived.set()
        return await answer

    async def _consume(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                self._arrived.clear()
                await self._arrived.wait()
            if self.max_wait_s and self._queued_queries() < self.max_queries:
                await asyncio.sleep(self.max_wait_s)  # let the other clients' requests join this batch
            batch = self._take_batch()
            if not batch:
                continue
            try:
                results = await loop.run_in_executor(self._executor, self._search_grouped, batch)
            except Exception as error:  # noqa: BLE001 - every waiting request learns why its search failed
                for request in batch:
                    if not request.answer.done():
                        request.answer.set_exception(error)
                continue
            self.batches += 1
            for request, hits in zip(batch, results):
                if not request.answer.done():  # the client may have gone away
                    request.answer.set_result(hits)

    def _queued_queries(self) -> int:
        return sum(len(request.queries) for request in self._pending)

    def _take_batch(self) -> list[_Request]:
        """Queued requests in arrival order, up to ``max_queries`` queries (at least one request);
        requests whose client has gone away are dropped."""
        batch: list[_Request] = []
        size = 0
        while self._pending and (not batch or size + len(self._pending[0].queries) <= self.max_queries):
            request = self._pending.popleft()
            if request.answer.done():
                continue
            batch.append(request)
            size += len(request.queries)
        return batch

    def _search_grouped(self, batch: list[_Request]) -> list[list[list[Hit]]]:
        """One ``search_fn`` call per distinct topk; results in request order."""
        results: list[list[list[Hit]]] = [[] for _ in batch]
        for topk in sorted({request.topk for request in batch}):
            members = [i for i, request in enumerate(batch) if request.topk == topk]
            hits = self.search_fn([query for i in members for query in batch[i].queries], topk)
            start = 0
            for i in members:
                end = start + len(batch[i].queries)
                results[i] = hits[start:end]
                start = end
        return results
