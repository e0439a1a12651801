"""compare.py's retrieval section: our server (BM25, dense) against the reference server design.

Every server gets the same load: ``clients`` concurrent closed-loop clients (threads, each with its own
HTTP connection, sending its next request when the last one is answered), real dev-set questions.
``*_single_qps`` sends one query per request (``{"query": q}``, what the reference's clients send),
``*_batched_qps`` ``batch_size`` queries per request (``{"queries": [...]}``, what our env client sends).
The reference design (``reference_retriever.py``: FastAPI sync endpoint, encode + FAISS search per
request) serves the same dense index folder with the same encoder, once as it ships and once with our
server's OpenMP setting (``reference_passive_*``). ``encoder_*`` is the encoder alone (one query per
call, and ``batch_size`` per call) in a fresh process with our server's OpenMP setting: the dense server
should not be slower than the encoder it wraps. ``*_cpu_ms_per_query`` is a process's CPU time per
query, which other jobs on the machine do not inflate the way they inflate wall time;
``dense_cpu_ratio_vs_reference`` compares it (reference / ours). Recall@3 is the share of dev questions
with a gold answer in the top-3 passages (``retrieval.answer_recall``).
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import statistics
import threading
import time
from pathlib import Path

import httpx
import psutil

from agent_system.environments.env_package.search.encoder import DenseEncoder, Prefixes
from agent_system.environments.env_package.search.index import IndexMeta
from agent_system.environments.env_package.search.server_process import RetrievalServer
from interleave import add_ratios, check_targets, interleave, summarize
from retrieval import answer_recall, dev_questions, ensure_index, index_dir_for, limited_corpus

REFERENCE_SCRIPT = Path(__file__).resolve().parent / "reference_retriever.py"
TARGETS = {
    "dense_ratio_vs_reference": (">=", 2.0),
    "dense_batched_vs_single": (">=", 5.0),
    "dense_single_vs_encoder": (">=", 1.0),
}
RATIOS = {
    "dense_ratio_vs_reference": ("dense_single_qps", "reference_dense_single_qps"),
    "dense_ratio_vs_reference_passive": ("dense_single_qps", "reference_passive_dense_single_qps"),
    "dense_cpu_ratio_vs_reference": ("reference_dense_single_cpu_ms_per_query", "dense_single_cpu_ms_per_query"),
    "dense_batched_vs_single": ("dense_batched_qps", "dense_single_qps"),
    "dense_single_vs_encoder": ("dense_single_qps", "encoder_single_qps"),
    "bm25_batched_vs_single": ("bm25_batched_qps", "bm25_single_qps"),
}


def closed_loop(server: RetrievalServer, payloads: list[dict], clients: int) -> dict[str, float]:
    """Send ``payloads`` with ``clients`` concurrent clients: queries/s, p50 request latency (ms), and the
    server's CPU milliseconds per query (its user + system time; unlike wall time, this does not depend on
    how much of the machine other jobs take)."""
    url, todo = server.url, iter(payloads)
    lock = threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []

    def client() -> None:
        with httpx.Client(timeout=600) as http:
            while True:
                with lock:
                    payload = next(todo, None)
                if payload is None or errors:
                    return
                sent = time.perf_counter()
                response = http.post(url, json=payload)
                elapsed = time.perf_counter() - sent
                with lock:
                    latencies.append(elapsed)
                    if response.status_code != 200:
                        errors.append(f"HTTP {response.status_code}: {response.text[:200]}")

    threads = [threading.Thread(target=client) for _ in range(clients)]
    cpu = psutil.Process(server.process.pid)
    cpu_start = sum(cpu.cpu_times()[:2])
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    total = time.perf_counter() - start
    cpu_s = sum(cpu.cpu_times()[:2]) - cpu_start
    if errors:
        raise RuntimeError(f"{url} answered {len(errors)} request(s) with an error, e.g. {errors[0]}")
    queries = sum(len(p["queries"]) if "queries" in p else 1 for p in payloads)
    return {"qps": queries / total, "p50_ms": 1000 * statistics.median(latencies),
            "cpu_ms_per_query": 1000 * cpu_s / queries}


def single_payloads(queries: list[str], n: int) -> list[dict]:
    return [{"query": q, "topk": 3} for q in itertools.islice(itertools.cycle(queries), n)]


def batched_payloads(queries: list[str], n: int, batch_size: int) -> list[dict]:
    cycled = list(itertools.islice(itertools.cycle(queries), n))
    return [{"queries": cycled[i : i + batch_size], "topk": 3} for i in range(0, n, batch_size)]


def encoder_speed(model: str, prefixes: Prefixes, queries: list[str], n: int, batch_size: int) -> dict[str, float]:
    """The encoder alone, in a fresh process with our server's OpenMP setting (it is read once, when
    torch loads): queries/s and CPU ms per query, one query per call and ``batch_size`` per call."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_encoder_speed_here, (model, prefixes, queries, n, batch_size))


def _encoder_speed_here(model: str, prefixes: Prefixes, queries: list[str], n: int,
                        batch_size: int) -> dict[str, float]:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    encoder = DenseEncoder(model, prefixes=prefixes)
    encoder.encode_queries(queries[:batch_size])  # warm-up
    cycled = list(itertools.islice(itertools.cycle(queries), n))
    singles = max(1, n // 4)
    start, cpu_start = time.perf_counter(), time.process_time()
    for query in cycled[:singles]:
        encoder.encode_queries([query])
    values = {"encoder_single_qps": singles / (time.perf_counter() - start),
              "encoder_single_cpu_ms_per_query": 1000 * (time.process_time() - cpu_start) / singles}
    start, cpu_start = time.perf_counter(), time.process_time()
    for i in range(0, n, batch_size):
        encoder.encode_queries(cycled[i : i + batch_size])
    values.update(encoder_batched_qps=n / (time.perf_counter() - start),
                  encoder_batched_cpu_ms_per_query=1000 * (time.process_time() - cpu_start) / n)
    return values


def server_side(prefix: str, server: RetrievalServer, payloads: list[dict], clients: int):
    def run() -> dict[str, float]:
        return {f"{prefix}_{key}": value for key, value in closed_loop(server, payloads, clients).items()}
    return run


def run(args) -> dict:
    """The retrieval section: ``args`` carries corpus_path, corpus_limit, index_root, reps, clients,
    batch_size, single_queries, batched_queries, questions_per_source, seed."""
    index_root = Path(args.index_root).expanduser()
    index_root.mkdir(parents=True, exist_ok=True)
    corpus = limited_corpus(Path(args.corpus_path), args.corpus_limit, index_root)
    questions = dev_questions(args.questions_per_source, args.seed)
    queries = [record.question for record in questions]
    index_dirs, build_s = {}, {}
    for method in ("bm25", "dense"):
        index_dirs[method] = index_dir_for(method, index_root, args.corpus_limit)
        built = ensure_index(method, corpus, index_dirs[method])
        build_s[method] = None if built is None else round(built, 1)
    meta = IndexMeta.load(index_dirs["dense"])
    prefixes = Prefixes(meta.query_prefix, meta.passage_prefix)
    single = single_payloads(queries, args.single_queries)
    batched = batched_payloads(queries, args.batched_queries, args.batch_size)
    with (RetrievalServer(index_dirs["dense"], script=REFERENCE_SCRIPT) as reference,
          RetrievalServer(index_dirs["dense"], "--omp_passive", script=REFERENCE_SCRIPT) as reference_passive,
          RetrievalServer(index_dirs["dense"]) as dense, RetrievalServer(index_dirs["bm25"]) as bm25):
        for server in (reference, reference_passive, dense, bm25):  # warm-up: lazy model parts, mmap pages
            closed_loop(server, single[: 2 * args.clients], args.clients)
        with httpx.Client(timeout=600) as http:
            recall = {method: answer_recall(http, server.url, questions, args.batch_size)
                      for method, server in (("bm25", bm25), ("dense", dense))}
        rounds = interleave([
            lambda: encoder_speed(meta.model, prefixes, queries, args.single_queries, args.batch_size),
            server_side("reference_dense_single", reference, single, args.clients),
            server_side("reference_passive_dense_single", reference_passive, single, args.clients),
            server_side("dense_single", dense, single, args.clients),
            server_side("dense_batched", dense, batched, args.clients),
            server_side("bm25_single", bm25, single, args.clients),
            server_side("bm25_batched", bm25, batched, args.clients),
        ], args.reps)
    add_ratios(rounds, RATIOS)
    summary = summarize(rounds, digits=2)
    summary.update(
        recall_at_3_bm25=recall["bm25"]["all"], recall_at_3_dense=recall["dense"]["all"],
        recall_questions=recall["bm25"]["questions"],
        recall_at_3_per_source={method: recall[method]["per_source"] for method in ("bm25", "dense")},
        targets=check_targets(summary, TARGETS),
        setup={"corpus": str(corpus), "num_docs": meta.num_docs, "dense_model": Path(meta.model).name,
               "clients": args.clients, "batch_size": args.batch_size, "single_queries": args.single_queries,
               "batched_queries": args.batched_queries, "index_build_s": build_s},
    )
    return summary
