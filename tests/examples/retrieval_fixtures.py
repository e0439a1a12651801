"""Shared test helpers for the Search-QA retriever: small real indexes and a real server process.

Indexes are built once per pytest session from the first lines of the bundled corpus
(``$SKILLZERO_SHARED_DATA/search/corpus.jsonl``) and reused by every module that asks for them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from verl.utils.fs import shared_data_dir
from agent_system.environments.env_package.search.index import META_FILE, build_bm25_index, build_dense_index
from agent_system.environments.env_package.search.server_process import RetrievalServer

CORPUS = shared_data_dir() / "search" / "corpus.jsonl"
SLICE_LINES = {"bm25": 400, "dense": 64}  # dense encodes on CPU: keep it small


def corpus_slice(folder: Path, lines: int) -> Path:
    """The first ``lines`` passages of the bundled corpus, as a file of their own."""
    path = folder / f"corpus_{lines}.jsonl"
    if not path.exists():
        with CORPUS.open() as source:
            path.write_text("".join(line for _, line in zip(range(lines), source)))
    return path


def slice_documents(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def session_index(tmp_path_factory: pytest.TempPathFactory, method: str) -> Path:
    """A ``method`` index over a corpus slice, built on first use in this session."""
    folder = tmp_path_factory.getbasetemp() / "search-indexes"
    folder.mkdir(exist_ok=True)
    index_dir = folder / method
    if not (index_dir / META_FILE).exists():
        corpus = corpus_slice(folder, SLICE_LINES[method])
        build = build_bm25_index if method == "bm25" else build_dense_index
        build(corpus, index_dir)
    return index_dir


@pytest.fixture(scope="session")
def bm25_index(tmp_path_factory) -> Path:
    return session_index(tmp_path_factory, "bm25")


@pytest.fixture(scope="session")
def dense_index(tmp_path_factory) -> Path:
    return session_index(tmp_path_factory, "dense")


def running_server(index_dir: Path, *extra_args: str) -> RetrievalServer:
    """The real retrieval server over ``index_dir`` (a context manager that stops it)."""
    return RetrievalServer(index_dir, *extra_args)
