"""The in-process retriever core: BM25 (``bm25s``) or dense (FAISS) search over a :class:`Corpus`.

Used by the HTTP server (``examples/search/retriever/retrieval_server.py``) and, without a server, by
the ``local:<index dir>`` search backend of the environment. Every search is a batch: queries are
tokenized / encoded together and searched with one call. One retriever can be shared by many threads
(server request handlers, environment workers): only the step that is not thread-safe holds a lock —
the BM25 tokenizer (its Snowball stemmer keeps state) and the dense encoder (a fast tokenizer must not
be re-configured while another thread uses it) — while BM25 scoring and CPU FAISS search run unlocked
(a FAISS index on the GPU gets a lock of its own: GPU indexes are not thread-safe).
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent_system.environments.env_package.search.corpus import Corpus, Document
from agent_system.environments.env_package.search.encoder import (
    DEFAULT_DENSE_MODEL,
    DenseEncoder,
    Prefixes,
    prefixes_for,
)
from agent_system.environments.env_package.search.index import (
    BM25_SUBDIR,
    DENSE_FILE,
    IndexMeta,
    bm25_tokenizer,
    find_index_folder,
)

RETRIEVER_NAMES = ("bm25", "dense", "e5")  # "e5": the reference launch scripts' name for dense


@dataclass(frozen=True)
class Hit:
    document: Document
    score: float


class Retriever(ABC):
    """Top-k passage search; subclasses implement :meth:`_search_rows`."""

    method: str

    def __init__(self, corpus: Corpus, num_rows: int, index_path: Path):
        if len(corpus) != num_rows:
            raise ValueError(
                f"index {index_path} has {num_rows} rows but corpus {corpus.path} has {len(corpus)} lines; "
                "pass the corpus the index was built from (--corpus_path) or rebuild the index"
            )
        self.corpus = corpus
        self.index_path = index_path

    @property
    def num_docs(self) -> int:
        return len(self.corpus)

    @abstractmethod
    def _search_rows(self, queries: list[str], topk: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows[n, k], scores[n, k]); rows < 0 mark missing hits."""

    def search_batch(self, queries: list[str], topk: int) -> list[list[Hit]]:
        """The ``topk`` best passages for each query, best first."""
        if not queries:
            return []
        rows, scores = self._search_rows(queries, min(topk, self.num_docs))
        return [
            [Hit(self.corpus.get(int(row)), float(score)) for row, score in zip(row_list, score_list) if row >= 0]
            for row_list, score_list in zip(rows, scores)
        ]


class BM25Retriever(Retriever):
    method = "bm25"

    def __init__(self, folder: Path, corpus: Corpus):
        import bm25s

        self._model = bm25s.BM25.load(folder, mmap=True, show_progress=False)
        self._tokenizer = bm25_tokenizer()
        self._tokenizer.load_vocab(folder)
        self._tokenizer.load_stopwords(folder)
        self._tokenizer_lock = threading.Lock()
        super().__init__(corpus, int(self._model.scores["num_docs"]), folder)

    def _search_rows(self, queries: list[str], topk: int) -> tuple[np.ndarray, np.ndarray]:
        with self._tokenizer_lock:
            tokens = self._tokenizer.tokenize(queries, update_vocab=False, return_as="ids", show_progress=False)
        return self._model.retrieve(tokens, k=topk, show_progress=False)


class DenseRetriever(Retriever):
    method = "dense"

    def __init__(self, index_file: Path, corpus: Corpus, encoder: DenseEncoder, faiss_gpu: bool = False):
        import faiss

        index = faiss.read_index(str(index_file))
        if faiss_gpu:
            if not hasattr(faiss, "index_cpu_to_all_gpus") or faiss.get_num_gpus() == 0:
                raise ValueError("--faiss_gpu needs a GPU build of FAISS (faiss-gpu) and a visible GPU")
            options = faiss.GpuMultipleClonerOptions()
            options.useFloat16 = True
            options.shard = True
            index = faiss.index_cpu_to_all_gpus(index, co=options)
        if index.d != encoder.dim:
            raise ValueError(
                f"index {index_file} holds {index.d}-dim vectors but model {encoder.model} makes "
                f"{encoder.dim}-dim ones; pass the model the index was built with (--retriever_model)"
            )
        self._index = index
        self.encoder = encoder
        self._encoder_lock = threading.Lock()
        # FAISS GPU indexes are not thread-safe; CPU ones are searched concurrently without a lock.
        self._search_lock = threading.Lock() if faiss_gpu else contextlib.nullcontext()
        super().__init__(corpus, int(index.ntotal), index_file)

    def _search_rows(self, queries: list[str], topk: int) -> tuple[np.ndarray, np.ndarray]:
        with self._encoder_lock:
            vectors = self.encoder.encode_queries(queries)
        with self._search_lock:
            scores, rows = self._index.search(vectors, topk)
        return rows, scores


def load_retriever(index_path: str | os.PathLike, *, corpus_path: str | os.PathLike | None = None,
                   retriever_name: str | None = None, model: str | None = None,
                   faiss_gpu: bool = False) -> Retriever:
    """Open an index built by ``index_builder.py`` (its metadata fills in every unset argument), or a
    bare FAISS index file (e.g. Search-R1's ``e5_Flat.index``) given with corpus, name and model."""
    folder = find_index_folder(index_path)
    if folder is None:
        return _load_bare_faiss(Path(index_path), corpus_path, retriever_name, model, faiss_gpu)
    meta = IndexMeta.load(folder)
    requested = {"e5": "dense"}.get(retriever_name, retriever_name)
    if requested is not None and requested != meta.method:
        raise ValueError(f"--retriever_name {retriever_name} but {folder} holds a {meta.method} index")
    corpus = Corpus(corpus_path or meta.corpus_path)
    if meta.method == "bm25":
        return BM25Retriever(folder / BM25_SUBDIR, corpus)
    encoder = DenseEncoder(model or meta.model, prefixes=Prefixes(meta.query_prefix, meta.passage_prefix))
    return DenseRetriever(folder / DENSE_FILE, corpus, encoder, faiss_gpu)


def _load_bare_faiss(index_file: Path, corpus_path, retriever_name, model, faiss_gpu) -> Retriever:
    if not index_file.is_file():
        raise FileNotFoundError(
            f"--index_path {index_file} is neither an index folder (with index_meta.json) nor a FAISS index "
            "file; build one with examples/search/retriever/index_builder.py"
        )
    if retriever_name == "bm25" or corpus_path is None:
        raise ValueError(
            f"{index_file} has no index_meta.json, so it is read as a bare FAISS index: pass "
            "--retriever_name dense (or e5), --retriever_model and --corpus_path with it"
        )
    model = model or DEFAULT_DENSE_MODEL
    prefixes = prefixes_for("e5" if retriever_name == "e5" else model)
    encoder = DenseEncoder(model, prefixes=prefixes)
    return DenseRetriever(index_file, Corpus(corpus_path), encoder, faiss_gpu)


@functools.lru_cache(maxsize=None)
def shared_retriever(index_path: str) -> Retriever:
    """One retriever per index folder and process (train / val / test managers share it)."""
    return load_retriever(index_path)
