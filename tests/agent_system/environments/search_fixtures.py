"""A minimal Search-R1-compatible retrieval server that takes one query per request, for client tests.

Like the published Search-R1 retriever it is a FastAPI app whose ``POST /retrieve`` body is a pydantic
model ``{"query": str, "topk": int | null, "return_scores": bool}``: a batch body (``{"queries": [...]}``)
fails validation with HTTP 422. Each query gets ``topk`` documents that name it, so answers can be checked.
``fail_next`` makes the next requests answer 503 (a transient outage); ``delay_s`` slows every answer so
that concurrent requests overlap; ``requests`` counts every POST, ``queries`` the accepted ones.
"""

from __future__ import annotations

import socket
import threading
import time

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel


class QueryRequest(BaseModel):
    query: str
    topk: int | None = 3
    return_scores: bool = False


def document_for(query: str, rank: int) -> dict:
    return {"id": f"{query}-{rank}", "contents": f'"{query}"\nPassage {rank} about {query}.'}


class SingleQueryServer:
    """The server in a background thread of this process, on a free port (a context manager)."""

    def __init__(self, delay_s: float = 0.0):
        self.queries: list[str] = []
        self.fail_next = 0
        self.delay_s = delay_s
        self.in_flight = self.max_in_flight = 0
        self.requests = 0  # every POST, including the ones validation rejects
        self._lock = threading.Lock()
        app = FastAPI()

        @app.middleware("http")
        async def count(request, call_next):
            self.requests += 1
            return await call_next(request)

        @app.post("/retrieve")
        def retrieve(request: QueryRequest):  # a sync endpoint: FastAPI runs it in its thread pool
            with self._lock:
                self.queries.append(request.query)
                failing = self.fail_next > 0
                self.fail_next -= failing
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
            time.sleep(self.delay_s)
            with self._lock:
                self.in_flight -= 1
            if failing:
                return JSONResponse(status_code=503, content={"detail": "index is reloading"})
            docs = [document_for(request.query, rank) for rank in range(request.topk or 3)]
            if request.return_scores:
                return {"result": [[{"document": doc, "score": 1.0 / (1 + i)} for i, doc in enumerate(docs)]]}
            return {"result": [docs]}

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/retrieve"
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the test retrieval server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)

    def __enter__(self) -> SingleQueryServer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()
