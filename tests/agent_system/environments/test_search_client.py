"""Search backends against real local HTTP servers: batch and single-query (Search-R1) forms, retries and
back-off, failed searches as error observations, sustained outages; and the wire format."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agent_system.environments.env_package.search.api import (
    MAX_QUERY_CHARS,
    ApiError,
    parse_request,
    parse_result,
    render_result,
)
from agent_system.environments.env_package.search.client import (
    SEARCH_FAILED_OBSERVATION,
    HttpSearchBackend,
    RetrievalError,
    SearchFailure,
    SearchSettings,
    format_information,
)
from agent_system.environments.env_package.search.retriever import Hit
from agent_system.environments.search_manager import make_manager
from tests.agent_system.environments.search_fixtures import SingleQueryServer, document_for

DOC = {"id": "7", "contents": '"Lima"\nLima is the capital of Peru.'}


class ScriptedServer:
    """A real HTTP server that answers ``/retrieve`` (either form) with a scripted list of statuses, then 200."""

    def __init__(self, statuses: list[int]):
        self.statuses = list(statuses)
        self.bodies: list[dict] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                owner.bodies.append(body)
                status = owner.statuses.pop(0) if owner.statuses else 200
                queries = body["queries"] if "queries" in body else [body["query"]]
                reply = (render_result([[Hit(DOC, 1.5)]] * len(queries), True) if status == 200
                         else {"error": f"scripted {status}"})
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/retrieve"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def scripted():
    servers = []

    def start(statuses):
        servers.append(ScriptedServer(statuses))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


SETTINGS = SearchSettings(topk=3, timeout=5, max_retries=2, retry_backoff=0.01, max_outage_s=60, concurrency=4)


def test_retries_5xx_and_429_then_succeeds(scripted):
    server = scripted([503, 429])
    backend = HttpSearchBackend(server.url, SETTINGS)
    assert backend.search(["capital of Peru", "x" * (MAX_QUERY_CHARS + 50)]) == [[DOC], [DOC]]
    assert len(server.bodies) == 3 and backend.form == "batch"
    assert server.bodies[-1]["topk"] == 3 and server.bodies[-1]["return_scores"] is True
    assert len(server.bodies[-1]["queries"][1]) == MAX_QUERY_CHARS  # cut to the server's limit
    assert backend.counts.take() == (2, 0)
    backend.close()


def test_a_search_that_fails_every_attempt_is_a_failure_not_a_crash(scripted):
    server = scripted([503] * 3)
    backend = HttpSearchBackend(server.url, SETTINGS)
    (failure,) = backend.search(["q"])
    assert isinstance(failure, SearchFailure) and "HTTP 503" in failure.reason and len(server.bodies) == 3
    assert format_information(failure) == SEARCH_FAILED_OBSERVATION and backend.counts.take() == (1, 1)
    assert backend.search(["q"]) == [[DOC]] and backend.counts.take() == (1, 0)  # the server is back
    backend.close()


def test_a_request_rejected_in_both_forms_stops_with_the_server_message(scripted):
    server = scripted([422, 422])
    with pytest.raises(RetrievalError, match="rejected the request.*scripted 422"):
        HttpSearchBackend(server.url, SETTINGS).search(["q"])
    assert [sorted(body) for body in server.bodies] == [["queries", "return_scores", "topk"],
                                                        ["query", "return_scores", "topk"]]
    server = scripted([404])  # not a batch rejection: no second form to try
    with pytest.raises(RetrievalError, match="HTTP 404"):
        HttpSearchBackend(server.url, SETTINGS).search(["q"])
    assert len(server.bodies) == 1


def test_unreachable_server_with_no_outage_allowed_names_the_url_and_how_to_start_it():
    url = "http://127.0.0.1:9/retrieve"  # discard port: nothing listens
    with pytest.raises(RetrievalError) as error:
        HttpSearchBackend(url, SearchSettings(max_retries=1, retry_backoff=0.01, max_outage_s=0)).search(["q"])
    message = str(error.value)
    assert url in message and "retrieval_server.py" in message and "local:" in message
    assert "env.search.max_outage_s=0" in message


# ------------------------------------------------------------- a Search-R1 single-query server


@pytest.fixture()
def single_server():
    with SingleQueryServer(delay_s=0.05) as server:
        yield server


def test_a_single_query_server_is_detected_and_queried_concurrently(single_server):
    backend = HttpSearchBackend(single_server.url, SETTINGS)
    queries = [f"question {i}" for i in range(8)]
    results = backend.search(queries)
    assert results == [[document_for(q, rank) for rank in range(3)] for q in queries]
    assert backend.form == "single" and single_server.requests == 1 + 8  # one rejected batch, then one by one
    assert sorted(single_server.queries) == sorted(queries) and single_server.max_in_flight > 1
    assert backend.search(["again"]) == [[document_for("again", rank) for rank in range(3)]]
    assert single_server.requests == 10  # the form is remembered
    assert backend.counts.take() == (9, 0)
    backend.close()


def test_a_transient_outage_is_retried_away(single_server):
    backend = HttpSearchBackend(single_server.url, SETTINGS)
    backend.search(["warm up"])
    single_server.fail_next = 2  # max_retries=2: the third attempt gets through
    assert backend.search(["capital of Peru"]) == [[document_for("capital of Peru", rank) for rank in range(3)]]
    assert backend.counts.take() == (2, 0)
    backend.close()


def search_env_cfg(url: str, **search) -> dict:
    return {"env_name": "search", "max_steps": 4, "history_length": 4,
            "search": {"search_url": url, "topk": 2, "timeout": 5, "max_retries": 1, "retry_backoff": 0.01,
                       "max_outage_s": 60, "concurrency": 4, **search}}


TASKS = [{"question": "Who wrote Hamlet?", "ground_truth": ["Shakespeare"], "data_source": "nq", "seed": 0},
         {"question": "Capital of Peru?", "ground_truth": ["Lima"], "data_source": "nq", "seed": 1}]


def test_failed_searches_are_error_observations_counted_in_search_errors(single_server):
    manager = make_manager(search_env_cfg(single_server.url), split="train", num_envs=2)
    try:
        manager.reset(TASKS)
        single_server.fail_next = 100  # every attempt of this turn fails
        obs, rewards, dones, infos = manager.step(["<search>Hamlet author</search>", "<search>Peru capital</search>"])
        assert all(SEARCH_FAILED_OBSERVATION in text for text in obs["text"]) and not dones.any()
        assert all(info["is_action_valid"] for info in infos)
        assert manager.pop_metrics() == {"search/queries": 2.0, "search/errors": 2.0}
        single_server.fail_next = 0  # the server recovers: the episodes go on with documents
        obs, _, dones, _ = manager.step(["<search>Hamlet author</search>", "<answer>Lima</answer>"])
        assert "Passage 0 about Hamlet author" in obs["text"][0] and dones.tolist() == [False, True]
        assert manager.pop_metrics() == {"search/queries": 1.0, "search/errors": 0.0}
    finally:
        manager.close()


def test_a_sustained_outage_stops_the_run_naming_the_url():
    with SingleQueryServer() as down:
        pass  # stopped: nothing listens on its port any more
    manager = make_manager(search_env_cfg(down.url, max_outage_s=0.3), split="train", num_envs=2)
    try:
        manager.reset(TASKS)
        obs, _, dones, _ = manager.step(["<search>a</search>", "<search>b</search>"])
        assert SEARCH_FAILED_OBSERVATION in obs["text"][0] and not dones.any()  # within the allowed outage
        time.sleep(0.35)
        with pytest.raises(RetrievalError, match=f"{down.url} failed every request for .*max_outage_s=0.3"):
            manager.step(["<search>a</search>", "<search>b</search>"])
    finally:
        manager.close()


def test_parse_request_forms_and_defaults():
    single = parse_request({"query": "a"}, default_topk=3)
    assert (single.queries, single.topk, single.return_scores) == (["a"], 3, False)
    batch = parse_request({"queries": ["a", "b"], "topk": 5, "return_scores": True}, default_topk=3)
    assert (batch.queries, batch.topk, batch.return_scores) == (["a", "b"], 5, True)
    with pytest.raises(ApiError) as error:
        parse_request({"query": "a", "topk": 1000}, default_topk=3)
    assert error.value.status == 422


def test_result_shapes_round_trip():
    hits = [[Hit(DOC, 2.0)], []]
    assert render_result(hits, False) == {"result": [[DOC], []]}
    assert render_result(hits, True) == {"result": [[{"document": DOC, "score": 2.0}], []]}
    assert parse_result(render_result(hits, True), 2) == parse_result(render_result(hits, False), 2) == [[DOC], []]
    with pytest.raises(ValueError, match="2 entries"):
        parse_result({"result": [[DOC]]}, 2)
    with pytest.raises(ValueError, match="'contents' string"):
        parse_result({"result": [[{"id": "1"}]]}, 1)


def test_format_information():
    assert format_information([DOC, {"id": "8", "contents": "no title line"}]) == (
        "<information>Doc 1: (Title: Lima) Lima is the capital of Peru.\nDoc 2: no title line</information>"
    )
    assert format_information([]) == "<information>No documents found.</information>"
