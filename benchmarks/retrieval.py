"""Retrieval benchmark: throughput / latency of the real server, BM25 vs dense, and answer recall.

    python benchmarks/retrieval.py [--methods bm25,dense] [--corpus_path corpus.jsonl] [--corpus_limit N]
        [--index_root DIR] [--num_queries 200] [--batch_size 32] [--questions_per_source 50]

For each method it builds (or reuses) an index of the corpus under ``--index_root``, starts
``retrieval_server.py`` on it, and prints one JSON object with, per method:
- ``single``: one ``{"query"}`` request at a time -> queries/s, p50 / p99 request latency (ms);
- ``batched``: ``{"queries": [batch_size]}`` requests -> queries/s, p50 / p99 request latency (ms);
- ``answer_recall_at_3``: share of bundled dev questions (``--questions_per_source`` per source,
  seeded) with a gold answer inside the top-3 passages (normalised text, whole words), overall and
  per source.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from agent_system.environments.env_package.search.answers import normalize_answer
from agent_system.environments.env_package.search.corpus import CorpusError
from agent_system.environments.env_package.search.dataset import QARecord, default_qa_dir, read_qa_dir
from agent_system.environments.env_package.search.index import META_FILE, IndexMeta, build_bm25_index, build_dense_index
from verl.utils.fs import shared_data_dir
from agent_system.environments.env_package.search.server_process import RetrievalServer

RECALL_K = 3


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default="bm25,dense")
    parser.add_argument("--corpus_path", default=str(shared_data_dir() / "search" / "corpus.jsonl"))
    parser.add_argument("--corpus_limit", type=int, default=None, help="use only the first N passages")
    parser.add_argument("--index_root", default=os.path.expanduser("~/.cache/skillzero/search-bench"))
    parser.add_argument("--num_queries", type=int, default=200, help="queries timed per mode")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--questions_per_source", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def limited_corpus(corpus_path: Path, limit: int | None, index_root: Path) -> Path:
    if limit is None:
        return corpus_path
    path = index_root / f"corpus_first_{limit}.jsonl"
    if not path.exists():
        with corpus_path.open() as source:
            path.write_text("".join(line for _, line in zip(range(limit), source)))
    return path


def index_dir_for(method: str, index_root: Path, corpus_limit: int | None) -> Path:
    """Where the benchmarks keep the ``method`` index of the (first ``corpus_limit`` passages of the) corpus."""
    return index_root / f"{method}-{'full' if corpus_limit is None else corpus_limit}"


def ensure_index(method: str, corpus: Path, index_dir: Path) -> float | None:
    """Build the index unless one over the same corpus exists; the build time, or None if reused."""
    if (index_dir / META_FILE).exists() and IndexMeta.load(index_dir).corpus_path == str(corpus.resolve()):
        return None
    start = time.perf_counter()
    (build_bm25_index if method == "bm25" else build_dense_index)(corpus, index_dir)
    return time.perf_counter() - start


def dev_questions(per_source: int, seed: int) -> list[QARecord]:
    rng = random.Random(seed)
    by_source: dict[str, list[QARecord]] = {}
    for record in read_qa_dir(default_qa_dir()):
        by_source.setdefault(record.data_source, []).append(record)
    return [record for source in sorted(by_source)
            for record in rng.sample(by_source[source], min(per_source, len(by_source[source])))]


def latency_summary(latencies_s: list[float], num_queries: int, total_s: float) -> dict:
    ms = np.array(latencies_s) * 1000.0
    return {"requests": len(latencies_s), "queries": num_queries, "queries_per_s": round(num_queries / total_s, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2)}


def timed_requests(client: httpx.Client, url: str, payloads: list[dict]) -> tuple[list[float], float, list[dict]]:
    latencies, bodies = [], []
    start = time.perf_counter()
    for payload in payloads:
        sent = time.perf_counter()
        response = client.post(url, json=payload)
        latencies.append(time.perf_counter() - sent)
        response.raise_for_status()
        bodies.append(response.json())
    return latencies, time.perf_counter() - start, bodies


def contains_answer(passages: list[str], gold_answers: tuple[str, ...]) -> bool:
    text = f" {normalize_answer(' '.join(passages))} "
    return any(f" {normalize_answer(gold)} " in text for gold in gold_answers if normalize_answer(gold))


def answer_recall(client: httpx.Client, url: str, questions: list[QARecord], batch_size: int) -> dict:
    """Share of ``questions`` with a gold answer in the server's top-3 passages, overall and per source."""
    recall_payloads = [{"queries": [q.question for q in questions[i : i + batch_size]], "topk": RECALL_K}
                       for i in range(0, len(questions), batch_size)]
    _, _, bodies = timed_requests(client, url, recall_payloads)
    documents = [per_query for body in bodies for per_query in body["result"]]
    hits_by_source: dict[str, list[bool]] = {}
    for record, docs in zip(questions, documents):
        hits_by_source.setdefault(record.data_source, []).append(
            contains_answer([doc["contents"] for doc in docs], record.golden_answers))
    all_hits = [hit for hits in hits_by_source.values() for hit in hits]
    return {
        "all": round(float(np.mean(all_hits)), 4), "questions": len(all_hits),
        "per_source": {source: round(float(np.mean(hits)), 4) for source, hits in sorted(hits_by_source.items())},
    }


def benchmark_method(server: RetrievalServer, queries: list[str], questions: list[QARecord], batch_size: int) -> dict:
    with httpx.Client(timeout=600) as client:
        client.post(server.url, json={"queries": queries[:batch_size]})  # warm-up (lazy model / mmap pages)
        single = timed_requests(client, server.url, [{"query": query} for query in queries])
        batches = [{"queries": queries[i : i + batch_size]} for i in range(0, len(queries), batch_size)]
        batched = timed_requests(client, server.url, batches)
        recall = answer_recall(client, server.url, questions, batch_size)
    return {
        "single": latency_summary(single[0], len(queries), single[1]),
        "batched": {"batch_size": batch_size, **latency_summary(batched[0], len(queries), batched[1])},
        "answer_recall_at_3": recall,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")  # index build progress on stderr
    index_root = Path(args.index_root).expanduser()
    index_root.mkdir(parents=True, exist_ok=True)
    try:
        corpus = limited_corpus(Path(args.corpus_path), args.corpus_limit, index_root)
        questions = dev_questions(args.questions_per_source, args.seed)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    timed = random.Random(args.seed + 1).sample(questions, min(args.num_queries, len(questions)))
    queries = [record.question for record in timed]
    machine = {"cpus": os.cpu_count(), "platform": platform.platform()}
    report = {"corpus": str(corpus), "machine": machine, "methods": {}}
    for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
        index_dir = index_dir_for(method, index_root, args.corpus_limit)
        try:
            build_s = ensure_index(method, corpus, index_dir)
        except CorpusError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        with RetrievalServer(index_dir) as server:
            num_docs = httpx.get(f"{server.base_url}/health").json()["num_docs"]
            result = benchmark_method(server, queries, questions, args.batch_size)
        build = None if build_s is None else round(build_s, 1)
        report["methods"][method] = {"num_docs": num_docs, "index_build_s": build, **result}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
