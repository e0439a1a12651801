"""Search backends: HTTP retries / back-off / errors against a real local HTTP server, and the wire format."""

from __future__ import annotations

import json
import threading
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
    HttpSearchBackend,
    RetrievalError,
    SearchSettings,
    format_information,
)
from agent_system.environments.env_package.search.retriever import Hit

DOC = {"id": "7", "contents": '"Lima"\nLima is the capital of Peru.'}


class ScriptedServer:
    """A real HTTP server that answers ``/retrieve`` with a scripted list of statuses, then 200."""

    def __init__(self, statuses: list[int]):
        self.statuses = list(statuses)
        self.bodies: list[dict] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                owner.bodies.append(body)
                status = owner.statuses.pop(0) if owner.statuses else 200
                reply = (render_result([[Hit(DOC, 1.5)]] * len(body["queries"]), True) if status == 200
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


SETTINGS = SearchSettings(topk=3, timeout=5, max_retries=2, retry_backoff=0.01)


def test_retries_5xx_then_succeeds(scripted):
    server = scripted([503, 500])
    backend = HttpSearchBackend(server.url, SETTINGS)
    assert backend.search(["capital of Peru", "x" * (MAX_QUERY_CHARS + 50)]) == [[DOC], [DOC]]
    assert len(server.bodies) == 3
    assert server.bodies[-1]["topk"] == 3 and server.bodies[-1]["return_scores"] is True
    assert len(server.bodies[-1]["queries"][1]) == MAX_QUERY_CHARS  # cut to the server's limit
    backend.close()


def test_gives_up_after_the_configured_retries(scripted):
    server = scripted([503] * 10)
    with pytest.raises(RetrievalError, match=r"after 3 attempt\(s\).*HTTP 503"):
        HttpSearchBackend(server.url, SETTINGS).search(["q"])
    assert len(server.bodies) == 3


def test_4xx_fails_at_once_with_the_server_message(scripted):
    server = scripted([422])
    with pytest.raises(RetrievalError, match="rejected the request.*scripted 422"):
        HttpSearchBackend(server.url, SETTINGS).search(["q"])
    assert len(server.bodies) == 1


def test_unreachable_server_names_the_url_and_how_to_start_it():
    url = "http://127.0.0.1:9/retrieve"  # discard port: nothing listens
    with pytest.raises(RetrievalError) as error:
        HttpSearchBackend(url, SearchSettings(max_retries=1, retry_backoff=0.01)).search(["q"])
    assert url in str(error.value) and "retrieval_server.py" in str(error.value) and "local:" in str(error.value)


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
