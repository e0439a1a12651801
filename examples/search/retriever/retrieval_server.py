"""Retrieval server: ``POST /retrieve`` and ``GET /health`` over a BM25 or dense index (SPEC §4).

    python examples/search/retriever/retrieval_server.py --index_path indexes/bm25 [--port 8000]

The wire format lives in ``agent_system.environments.env_package.search.api`` and the search itself in
``...search.retriever`` (the same code the environment's in-process ``local:`` backend runs). Concurrent
requests are searched together (``...search.batching.MicroBatcher``): eight clients sending one query
each cost about one batched encode, not eight. Bad requests get a 4xx answer with ``{"error": message}``;
the server keeps serving.
"""

from __future__ import annotations

import argparse
import json
import os
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from agent_system.environments.env_package.search.api import (
    MAX_BATCH,
    MAX_BODY_BYTES,
    MAX_TOPK,
    ApiError,
    parse_request,
    render_result,
)
from agent_system.environments.env_package.search.batching import MicroBatcher
from agent_system.environments.env_package.search.retriever import RETRIEVER_NAMES, Retriever, load_retriever


DEFAULT_BATCH_WAIT_MS = 2.0


def create_app(retriever: Retriever, default_topk: int, batch_wait_ms: float = DEFAULT_BATCH_WAIT_MS) -> FastAPI:
    """The FastAPI app serving ``retriever``; ``default_topk`` answers requests with ``topk`` null, and
    a batch waits up to ``batch_wait_ms`` for concurrent requests to join it."""
    batcher = MicroBatcher(retriever.search_batch, max_wait_s=batch_wait_ms / 1000.0, max_queries=MAX_BATCH)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="SkillZero retrieval server", lifespan=lifespan)

    @app.exception_handler(ApiError)
    async def reject(request: Request, error: ApiError) -> JSONResponse:
        return JSONResponse(status_code=error.status, content={"error": str(error)})

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "retriever": retriever.method, "num_docs": retriever.num_docs,
                "default_topk": default_topk, "search_batches": batcher.batches}

    @app.post("/retrieve")
    async def retrieve(request: Request) -> JSONResponse:
        declared = request.headers.get("content-length", "0")
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            raise ApiError(413, f"request body of {declared} bytes exceeds the {MAX_BODY_BYTES}-byte limit")
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            raise ApiError(413, f"request body of {len(body)} bytes exceeds the {MAX_BODY_BYTES}-byte limit")
        try:
            payload = json.loads(body)
        except ValueError as error:
            raise ApiError(400, f"the body is not valid JSON ({error})") from None
        parsed = parse_request(payload, default_topk)
        hits = await batcher.search(parsed.queries, parsed.topk)
        return JSONResponse(render_result(hits, parsed.return_scores))

    return app


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index_path", required=True,
                        help="index folder from index_builder.py (or a bare FAISS file with the flags below)")
    parser.add_argument("--corpus_path", default=None,
                        help="JSON-lines corpus; default: the one the index was built from")
    parser.add_argument("--topk", type=int, default=3, help="passages per query when a request sends topk null")
    parser.add_argument("--retriever_name", choices=RETRIEVER_NAMES, default=None,
                        help="bm25 | dense (e5 = dense with e5 prefixes); default: from the index metadata")
    parser.add_argument("--retriever_model", default=None,
                        help="dense encoder (hub name or path); default: the model the index was built with")
    parser.add_argument("--faiss_gpu", action="store_true", help="search the FAISS index on all visible GPUs")
    parser.add_argument("--batch_wait_ms", type=float, default=DEFAULT_BATCH_WAIT_MS,
                        help="how long a search waits for concurrent requests to join its batch (0: no wait)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    if not 1 <= args.topk <= MAX_TOPK:
        parser.error(f"--topk must be from 1 to {MAX_TOPK}")
    if not 0 <= args.batch_wait_ms <= 1000:
        parser.error(f"--batch_wait_ms must be from 0 to 1000 (got {args.batch_wait_ms})")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # Before torch / FAISS load their OpenMP runtimes (both are imported lazily by the retriever): idle
    # OpenMP workers sleep instead of spinning. The two runtimes' spinning teams otherwise fight over the
    # cores between every encode and search — on a 2-core machine shared with training jobs that made each
    # dense query cost ~10x the CPU (measured: docs/performance.md).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    retriever = load_retriever(
        args.index_path, corpus_path=args.corpus_path, retriever_name=args.retriever_name,
        model=args.retriever_model, faiss_gpu=args.faiss_gpu,
    )
    print(f"serving {retriever.method} index {retriever.index_path} ({retriever.num_docs} passages) "
          f"on http://{args.host}:{args.port}/retrieve", flush=True)
    uvicorn.run(create_app(retriever, args.topk, args.batch_wait_ms), host=args.host, port=args.port,
                log_level="warning")


if __name__ == "__main__":
    main()
