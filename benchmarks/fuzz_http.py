"""HTTP fuzz of the retrieval server (issue 15, item 6): no 5xx, the server stays up, memory stays bounded.

Two parts, both against a real server process (:class:`RetrievalServer`, bound to 127.0.0.1):

- **schema-driven**: hypothesis draws request bodies from the JSON Schema of ``POST /retrieve`` in the
  OpenAPI document the server serves (``/openapi.json``): bodies the schema accepts (which must get 200)
  and mutations of them (a field replaced by arbitrary JSON, an extra field, arbitrary JSON documents,
  NaN/inf, lone surrogates), which must get a 4xx;
- **raw attacks**: a body over the byte limit declared in Content-Length and one streamed chunked, bytes
  that are not UTF-8, JSON nested 100k deep (arrays and objects), and slow-loris clients that dribble
  their request a few bytes at a time while normal requests go on.

After the attacks the server must still answer ``/health`` and its resident memory must not have grown
by more than ``MEMORY_BOUND_BYTES``.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any

import httpx
import psutil
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from agent_system.environments.env_package.search.api import MAX_BODY_BYTES
from agent_system.environments.env_package.search.server_process import RetrievalServer

MEMORY_BOUND_BYTES = 4 * MAX_BODY_BYTES  # a few request buffers at most, never the sum of all bodies


def _schema_strategy(schema: dict[str, Any]) -> st.SearchStrategy:
    """Values the (subset of) JSON Schema used by ``REQUEST_SCHEMA`` accepts."""
    if "anyOf" in schema:
        return st.one_of([_schema_strategy(option) for option in schema["anyOf"]])
    kind = schema.get("type")
    if kind == "string":
        text = st.text(min_size=schema.get("minLength", 0), max_size=min(schema.get("maxLength", 64), 64))
        return text.filter(str.strip) if schema.get("pattern") == r"\S" else text
    if kind == "integer":
        return st.integers(schema.get("minimum"), schema.get("maximum"))
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        return st.lists(_schema_strategy(schema["items"]), min_size=schema.get("minItems", 0),
                        max_size=min(schema.get("maxItems", 8), 8))
    if kind == "object":
        properties = {k: _schema_strategy(v) for k, v in schema["properties"].items()}
        alternatives = [set(option["required"]) for option in schema.get("oneOf", [{"required": []}])]
        exclusive = set().union(*alternatives)
        return st.one_of([
            st.fixed_dictionaries({k: properties[k] for k in required},
                                  optional={k: s for k, s in properties.items() if k not in exclusive})
            for required in alternatives])
    raise ValueError(f"schema construct not covered by the fuzzer: {schema}")


_ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=16),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)


def _mutated(valid: st.SearchStrategy) -> st.SearchStrategy:
    """Bodies the schema rejects (most of them): a field replaced by arbitrary JSON, an extra field, or
    an arbitrary JSON document."""
    def replace(body: dict, value: Any, pick: int) -> dict:
        key = sorted(body)[pick % len(body)]
        return {**body, key: value}

    return st.one_of(
        st.builds(replace, valid, _ANY_JSON, st.integers(0, 10)),
        st.builds(lambda body, key, value: {**body, key: value}, valid, st.text(max_size=8), _ANY_JSON),
        _ANY_JSON,
    )


def request_schema(base_url: str) -> dict[str, Any]:
    """The JSON Schema of the ``POST /retrieve`` body from the server's OpenAPI document."""
    document = httpx.get(f"{base_url}/openapi.json", timeout=10).json()
    return document["paths"]["/retrieve"]["post"]["requestBody"]["content"]["application/json"]["schema"]


def schema_fuzz(server: RetrievalServer, examples: int, random_seed: int) -> dict[str, Any]:
    """``examples`` valid and ``examples`` mutated bodies; counts of 5xx and of valid bodies not answered 200."""
    valid = _schema_strategy(request_schema(server.base_url))
    counts = {"requests": 0, "responses_5xx": 0, "valid_not_200": 0, "status_counts": {}}
    failures: list[str] = []
    client = httpx.Client(timeout=60)

    def send(body: Any, must_succeed: bool) -> None:
        response = client.post(server.url, content=json.dumps(body).encode("utf-8", "surrogatepass"),
                               headers={"content-type": "application/json"})
        counts["requests"] += 1
        status = str(response.status_code)
        counts["status_counts"][status] = counts["status_counts"].get(status, 0) + 1
        if response.status_code >= 500 or (must_succeed and response.status_code != 200):
            counts["responses_5xx"] += response.status_code >= 500
            counts["valid_not_200"] += must_succeed and response.status_code != 200
            if len(failures) < 3:
                failures.append(f"{response.status_code} for {json.dumps(body)[:120]}: {response.text[:120]}")

    for strategy, must_succeed in ((valid, True), (_mutated(valid), False)):
        @seed(random_seed)
        @settings(max_examples=examples, database=None, deadline=None, suppress_health_check=list(HealthCheck))
        @given(strategy)
        def run(body: Any) -> None:
            send(body, must_succeed)

        run()
    client.close()
    return counts | {"failures": failures}


def _raw_post(url: str, body: bytes | Any, headers: dict[str, str] | None = None) -> int | str:
    try:
        return httpx.post(url, content=body, headers=headers or {"content-type": "application/json"},
                          timeout=120).status_code
    except httpx.TransportError as err:  # the server may close a refused upload early
        return f"closed ({type(err).__name__})"


def _declared_only(port: int, declared: int) -> int | str:
    """Declare a ``declared``-byte body, send 2 bytes, read the status line (httpx refuses to lie)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"POST /retrieve HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n{}" % declared)
        try:
            status_line = sock.recv(64).split(b"\r\n")[0].split()
        except OSError as err:
            return f"closed ({type(err).__name__})"
    return int(status_line[1]) if len(status_line) > 1 else "closed (no answer)"


def _chunks(total: int, size: int = 1 << 20):
    for _ in range(total // size):
        yield b" " * size


def _slow_loris(port: int, clients: int, duration_s: float) -> list[socket.socket]:
    """``clients`` connections that send a request's headers and body one byte every 0.2 s."""
    request = (b"POST /retrieve HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               b"Content-Length: 1000\r\n\r\n{\"query\": \"")
    sockets = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(clients)]

    def dribble() -> None:
        deadline, offset = time.monotonic() + duration_s, 0
        while time.monotonic() < deadline:
            for sock in sockets:
                try:
                    sock.send(request[offset % len(request):offset % len(request) + 1])
                except OSError:
                    pass
            offset += 1
            time.sleep(0.2)

    threading.Thread(target=dribble, daemon=True).start()
    return sockets


def raw_attacks(server: RetrievalServer, slow_clients: int = 50, slow_s: float = 10.0) -> dict[str, Any]:
    """Oversized, non-UTF-8, deeply nested and slow-loris requests; status per attack, server health after."""
    memory = psutil.Process(server.process.pid)
    rss_before = memory.memory_info().rss
    deep = 100_000
    statuses = {
        "oversized_declared": _declared_only(server.port, MAX_BODY_BYTES + 1),
        "oversized_chunked_64MiB": _raw_post(server.url, _chunks(64 << 20)),
        "not_utf8": _raw_post(server.url, b'{"query": "\xff\xfe\xc3\x28"}'),
        "nested_arrays_100k": _raw_post(server.url, b"[" * deep + b"]" * deep),
        "nested_objects_100k": _raw_post(server.url, b'{"a":' * deep + b"1" + b"}" * deep),
        "nested_in_query_100k": _raw_post(server.url, b'{"query": ' + b"[" * deep + b"]" * deep + b"}"),
    }
    sockets = _slow_loris(server.port, slow_clients, slow_s)
    latencies, during = [], set()
    for _ in range(10):  # normal requests while the slow clients hold their connections
        started = time.perf_counter()
        during.add(_raw_post(server.url, json.dumps({"query": "who wrote hamlet"}).encode()))
        latencies.append(time.perf_counter() - started)
    for sock in sockets:
        sock.close()
    statuses["normal_during_slow_loris"] = sorted(map(str, during))
    rss_growth = memory.memory_info().rss - rss_before
    return {
        "statuses": statuses,
        "responses_5xx": sum(str(v).startswith("5") for v in [*statuses.values(), *during]),
        "max_latency_during_slow_loris_s": round(max(latencies), 3),
        "server_up_after": server.process.poll() is None and server.healthy(),
        "rss_growth_mib": round(rss_growth / 2**20, 1),
        "rss_bound_mib": MEMORY_BOUND_BYTES / 2**20,
        "memory_bounded": rss_growth <= MEMORY_BOUND_BYTES,
    }
