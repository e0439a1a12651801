"""The retrieval server as a real subprocess over real BM25 and dense indexes of a corpus slice."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from agent_system.environments.env_package.search.client import RetrievalError
from agent_system.environments.env_package.search.server_process import SERVER_SCRIPT
from agent_system.environments.search_manager import make_manager
from tests.examples.retrieval_fixtures import running_server, slice_documents

QUERIES = ["Gary Groth editor of a comics magazine", "Fantagraphics Books co-founder", "tennis player born in 1960"]


@pytest.fixture(scope="module", params=["bm25", "dense"])
def server(request):
    index_dir = request.getfixturevalue(f"{request.param}_index")
    with running_server(index_dir) as process:
        yield process


@pytest.fixture(scope="module")
def bm25_server(bm25_index):
    with running_server(bm25_index) as process:
        yield process


def test_health_reports_the_index(server):
    health = httpx.get(f"{server.base_url}/health").json()
    assert health["status"] == "ok" and health["retriever"] in ("bm25", "dense")
    assert health["num_docs"] > 0 and health["default_topk"] == 3 and health["search_batches"] >= 0


def test_single_query_response_schema(server):
    corpus_ids = {doc["id"] for doc in slice_documents_for(server)}
    body = httpx.post(server.url, json={"query": QUERIES[0], "topk": 4, "return_scores": True}).json()
    assert list(body) == ["result"] and len(body["result"]) == 1
    hits = body["result"][0]
    assert len(hits) == 4
    for hit in hits:
        assert set(hit) == {"document", "score"} and isinstance(hit["score"], float)
        assert set(hit["document"]) == {"id", "contents"} and hit["document"]["id"] in corpus_ids
        assert hit["document"]["contents"].startswith('"')  # "Title"\ntext
    scores = [hit["score"] for hit in hits]
    assert scores == sorted(scores, reverse=True)


def test_without_scores_a_plain_document_list_and_default_topk(server):
    body = httpx.post(server.url, json={"query": QUERIES[1], "topk": None, "return_scores": False}).json()
    documents = body["result"][0]
    assert len(documents) == 3  # the server's --topk
    assert all(set(document) == {"id", "contents"} for document in documents)


def test_batch_equals_single_requests(server):
    batch = httpx.post(server.url, json={"queries": QUERIES, "topk": 3, "return_scores": True}).json()["result"]
    singles = [httpx.post(server.url, json={"query": q, "topk": 3, "return_scores": True}).json()["result"][0]
               for q in QUERIES]
    assert [[hit["document"] for hit in hits] for hits in batch] == [[hit["document"] for hit in hits] for hits in singles]
    for batch_hits, single_hits in zip(batch, singles):
        assert [hit["score"] for hit in batch_hits] == pytest.approx([hit["score"] for hit in single_hits], abs=1e-4)


def test_concurrent_single_query_clients_are_batched_on_the_server_and_get_their_own_results(server):
    queries = QUERIES * 4
    singles = {q: httpx.post(server.url, json={"query": q, "topk": 3, "return_scores": True}).json()["result"][0]
               for q in QUERIES}
    batches_before = httpx.get(f"{server.base_url}/health").json()["search_batches"]
    with ThreadPoolExecutor(max_workers=8) as pool:  # 8 clients, one query per request
        answers = list(pool.map(lambda q: httpx.post(server.url, json={"query": q, "topk": 3, "return_scores": True},
                                                     timeout=60).json()["result"][0], queries))
    for query, hits in zip(queries, answers):
        assert [hit["document"] for hit in hits] == [hit["document"] for hit in singles[query]]
        assert [hit["score"] for hit in hits] == pytest.approx([hit["score"] for hit in singles[query]], abs=1e-4)
    batches = httpx.get(f"{server.base_url}/health").json()["search_batches"] - batches_before
    assert 1 <= batches < len(queries)  # requests that arrived together were searched together


def test_gold_passage_ranks_first_for_its_title(server):
    first = slice_documents_for(server)[0]
    title = first["contents"].split("\n")[0].strip('"')
    body = httpx.post(server.url, json={"query": f"{title} editor publisher critic", "topk": 1}).json()
    assert body["result"][0][0]["id"] == first["id"]


BAD_REQUESTS = [
    (b"{not json", 400),
    (b"\xff\xfe\x00", 400),
    (b"[1, 2]", 422),
    (b'{"topk": 3}', 422),
    (b'{"query": "a", "queries": ["b"]}', 422),
    (b'{"query": 7}', 422),
    (b'{"query": "   "}', 422),
    (b'{"query": "a", "topk": 0}', 422),
    (b'{"query": "a", "topk": 101}', 422),
    (b'{"query": "a", "topk": -3}', 422),
    (b'{"query": "a", "topk": 2.5}', 422),
    (b'{"query": "a", "topk": true}', 422),
    (b'{"query": "a", "return_scores": "yes"}', 422),
    (b'{"query": "a", "top_k": 3}', 422),
    (b'{"queries": []}', 422),
    (b'{"queries": "not a list"}', 422),
    (b'{"queries": ["ok", 5]}', 422),
    (json.dumps({"query": "x" * 5000}).encode(), 422),
    (json.dumps({"queries": ["q"] * 1025}).encode(), 422),
    (b'{"query": "' + b"y" * 20_000_000 + b'"}', 413),
]


@pytest.mark.parametrize("body,status", BAD_REQUESTS, ids=[str(i) for i in range(len(BAD_REQUESTS))])
def test_bad_input_gets_4xx_with_a_message_and_the_server_stays_up(bm25_server, body, status):
    response = httpx.post(bm25_server.url, content=body, headers={"content-type": "application/json"}, timeout=60)
    assert response.status_code == status
    assert response.json()["error"]
    assert bm25_server.healthy()
    assert httpx.post(bm25_server.url, json={"query": "comics"}).status_code == 200


def test_wrong_method_and_path_are_4xx(bm25_server):
    assert httpx.get(bm25_server.url).status_code == 405
    assert httpx.post(f"{bm25_server.base_url}/nope", json={"query": "a"}).status_code == 404


def _env_cfg(url, max_retries: int = 1) -> dict:
    return {
        "max_steps": 4, "history_length": 2,
        "search": {"search_url": url, "topk": 3, "timeout": 30, "max_retries": max_retries, "retry_backoff": 0.05,
                   "max_outage_s": 0, "concurrency": 4},
    }


TASKS = [
    {"question": "Who co-founded Fantagraphics Books with Gary Groth?", "ground_truth": ["Kim Thompson"],
     "data_source": "hotpotqa", "skill_type": "multi_hop_reasoning", "seed": 0},
    {"question": "Which magazine is Gary Groth editor of?", "ground_truth": {"target": ["The Comics Journal", "TCJ"]},
     "data_source": "hotpotqa", "skill_type": "multi_hop_reasoning", "seed": 1},
]


def test_oracle_policy_scores_em_one_through_the_server_and_a_wrong_answer_zero(server):
    manager = make_manager(_env_cfg([server.url, server.url]), split="val", num_envs=4)
    try:
        obs, _ = manager.reset([TASKS[0], TASKS[1], TASKS[0], TASKS[1]])
        obs, rewards, dones, infos = manager.step([f"<think>look it up</think><search> {t['question']} </search>"
                                                  for t in (TASKS[0], TASKS[1], TASKS[0], TASKS[1])])
        assert not dones.any() and all(info["is_action_valid"] for info in infos)
        assert all(text.count("<information>Doc 1: ") == 1 for text in obs["text"])
        answers = ["<answer> kim thompson </answer>", "<answer>the Comics Journal.</answer>",
                   "<answer> Gary Groth </answer>", "<answer>Fantagraphics</answer>"]
        _, rewards, dones, infos = manager.step(answers)
        assert rewards.tolist() == [1.0, 1.0, 0.0, 0.0]
        assert dones.all() and [info["won"] for info in infos] == [True, True, False, False]
    finally:
        manager.close()


def slice_documents_for(server) -> list[dict]:
    """The corpus slice the server's index was built from (named in its metadata)."""
    meta = json.loads((server.index_dir / "index_meta.json").read_text())
    return slice_documents(Path(meta["corpus_path"]))


@pytest.mark.timeout(120)
def test_search_with_the_server_stopped_and_no_outage_allowed_stops_with_a_clear_error(bm25_index):
    with running_server(bm25_index) as stopped:
        pass
    assert not stopped.healthy()
    manager = make_manager(_env_cfg(stopped.url, max_retries=2), split="train", num_envs=1)
    try:
        manager.reset([TASKS[0]])
        with pytest.raises(RetrievalError) as error:
            manager.step(["<search>anything</search>"])
        message = str(error.value)
        assert stopped.url in message and "after 3 attempt(s)" in message and "retrieval_server.py" in message
        assert "env.search.max_outage_s=0" in message
    finally:
        manager.close()


def test_a_negative_batch_wait_stops_the_server_at_start_with_a_clear_message(bm25_index):
    command = [sys.executable, str(SERVER_SCRIPT), "--index_path", str(bm25_index), "--batch_wait_ms", "-1"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "--batch_wait_ms must be from 0 to 1000" in done.stderr
