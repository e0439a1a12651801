"""The reference retrieval server's design, rebuilt over our index as the anchor of ``compare.py``.

    python benchmarks/reference_retriever.py --index_path ~/.cache/skillzero/search-bench/dense-full --port 8001

Search-R1 / verl-agent serve dense retrieval with FastAPI and a *synchronous* endpoint taking a
pydantic request model: FastAPI runs each request in its thread pool, where the request's queries are
encoded by the sentence-transformers model and searched in a flat FAISS index, one request at a time
per thread, nothing shared or batched across requests. This script is that design (our code) over one
of our dense index folders — the same encoder, the same FAISS index, the same corpus — so that
``compare.py`` measures only the serving design against ours. It accepts the single form
``{"query": str, "topk": int|null, "return_scores": bool}`` its clients send, and answers
``GET /health`` like our server, so ``RetrievalServer(..., script=...)`` can run it. ``--omp_passive``
gives it our server's OpenMP setting, to tell the gain of that setting from the gain of batching.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

from agent_system.environments.env_package.search.corpus import Corpus
from agent_system.environments.env_package.search.encoder import DenseEncoder, Prefixes
from agent_system.environments.env_package.search.index import DENSE_FILE, IndexMeta


class QueryRequest(BaseModel):
    query: str
    topk: int | None = None
    return_scores: bool = False


def create_app(index_path: str, default_topk: int) -> FastAPI:
    import faiss

    meta = IndexMeta.load(Path(index_path))
    if meta.method != "dense":
        raise SystemExit(f"{index_path} holds a {meta.method} index; the reference design serves dense indexes")
    encoder = DenseEncoder(meta.model, prefixes=Prefixes(meta.query_prefix, meta.passage_prefix))
    index = faiss.read_index(str(Path(index_path) / DENSE_FILE))
    corpus = Corpus(meta.corpus_path)
    app = FastAPI(title="reference-design retrieval server")

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "retriever": "dense", "num_docs": len(corpus), "default_topk": default_topk}

    @app.post("/retrieve")
    def retrieve(request: QueryRequest) -> dict:
        topk = request.topk or default_topk
        scores, rows = index.search(encoder.encode_queries([request.query]), topk)
        documents = [corpus.get(int(row)) for row in rows[0] if row >= 0]
        if request.return_scores:
            return {"result": [[{"document": doc, "score": float(score)} for doc, score in zip(documents, scores[0])]]}
        return {"result": [documents]}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index_path", required=True, help="a dense index folder from index_builder.py")
    parser.add_argument("--topk", type=int, default=3)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--omp_passive", action="store_true",
                        help="let idle OpenMP workers sleep (OMP_WAIT_POLICY=PASSIVE), as our server does")
    args = parser.parse_args()
    if args.omp_passive:  # torch and FAISS are imported later, in create_app
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    uvicorn.run(create_app(args.index_path, args.topk), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
