"""Server-side micro-batching and unlocked retrievers: faster, never different.

Real BM25 and dense retrievers over slices of the bundled corpus; concurrent requests go through the
:class:`MicroBatcher` (or straight to a shared retriever from many threads) and must get exactly what the
same queries get when searched alone.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from agent_system.environments.env_package.search.batching import MicroBatcher
from agent_system.environments.env_package.search.retriever import Retriever, load_retriever

QUERIES = ["Gary Groth editor of a comics magazine", "Fantagraphics Books co-founder", "tennis player born in 1960",
           "American football coach", "capital city of a country", "album released by a rock band",
           "river in Europe", "film directed in 1995", "university founded in the 19th century", "a village in Poland"]


@pytest.fixture(scope="module", params=["bm25", "dense"])
def retriever(request) -> Retriever:
    return load_retriever(request.getfixturevalue(f"{request.param}_index"))


class RecordingSearch:
    """The retriever's real ``search_batch``, remembering the (number of queries, topk) of every call."""

    def __init__(self, retriever: Retriever, fail_on: str | None = None):
        self.retriever, self.fail_on, self.calls = retriever, fail_on, []

    def __call__(self, queries: list[str], topk: int):
        self.calls.append((len(queries), topk))
        if self.fail_on in queries:
            raise ValueError(f"cannot search {self.fail_on!r}")
        return self.retriever.search_batch(queries, topk)


def assert_same_hits(got, expected) -> None:
    assert [[hit.document for hit in hits] for hits in got] == [[hit.document for hit in hits] for hits in expected]
    for got_hits, expected_hits in zip(got, expected):
        assert [hit.score for hit in got_hits] == pytest.approx([hit.score for hit in expected_hits], abs=1e-4)


async def concurrently(batcher: MicroBatcher, requests: list[tuple[list[str], int]]):
    await batcher.start()
    try:
        return await asyncio.gather(*(batcher.search(queries, topk) for queries, topk in requests),
                                    return_exceptions=True)
    finally:
        await batcher.stop()


def test_concurrent_requests_are_batched_and_answered_as_if_searched_alone(retriever):
    requests = [([q], 3) for q in QUERIES] + [([QUERIES[0]], 5), (QUERIES[3:6], 3), ([QUERIES[7]], 1)]
    search = RecordingSearch(retriever)
    results = asyncio.run(concurrently(MicroBatcher(search, max_wait_s=0.05), requests))
    for (queries, topk), hits in zip(requests, results):
        assert len(hits) == len(queries) and all(len(per_query) == topk for per_query in hits)
        assert_same_hits(hits, retriever.search_batch(queries, topk))
    # 13 requests, 3 distinct topk values: one call per topk, every query searched exactly once
    assert sorted(search.calls) == [(1, 1), (1, 5), (13, 3)]


def test_a_batch_never_exceeds_max_queries_but_a_large_request_still_goes_through(bm25_index):
    retriever = load_retriever(bm25_index)
    search = RecordingSearch(retriever)
    requests = [([q], 3) for q in QUERIES] + [(QUERIES[:6], 3)]
    results = asyncio.run(concurrently(MicroBatcher(search, max_wait_s=0.05, max_queries=4), requests))
    assert max(n for n, _ in search.calls if n != 6) <= 4 and (6, 3) in search.calls
    assert sum(n for n, _ in search.calls) == len(QUERIES) + 6
    for (queries, topk), hits in zip(requests, results):
        assert_same_hits(hits, retriever.search_batch(queries, topk))


def test_a_failing_search_fails_only_its_batch_and_the_batcher_keeps_serving(bm25_index):
    retriever = load_retriever(bm25_index)
    search = RecordingSearch(retriever, fail_on="boom")

    async def scenario():
        batcher = MicroBatcher(search, max_wait_s=0.05)
        await batcher.start()
        try:
            failed = await asyncio.gather(batcher.search(["boom"], 3), batcher.search([QUERIES[0]], 3),
                                          return_exceptions=True)
            after = await batcher.search([QUERIES[1]], 3)
        finally:
            await batcher.stop()
        return failed, after

    failed, after = asyncio.run(scenario())
    assert all(isinstance(error, ValueError) and "boom" in str(error) for error in failed)
    assert_same_hits(after, retriever.search_batch([QUERIES[1]], 3))


def test_batcher_settings_are_checked_and_it_must_be_started():
    with pytest.raises(ValueError, match="max_wait_s"):
        MicroBatcher(lambda q, k: [], max_wait_s=-1)
    with pytest.raises(ValueError, match="max_queries"):
        MicroBatcher(lambda q, k: [], max_queries=0)
    with pytest.raises(RuntimeError, match="before start"):
        asyncio.run(MicroBatcher(lambda q, k: []).search(["a"], 3))


def test_one_retriever_shared_by_many_threads_answers_as_when_used_alone(retriever):
    expected = [retriever.search_batch([q], 4) for q in QUERIES]
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(lambda q: retriever.search_batch([q], 4), QUERIES * 3))
    for i, hits in enumerate(got):
        assert_same_hits(hits, expected[i % len(QUERIES)])
