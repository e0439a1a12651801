"""Index building (CLI and library) and loading errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from agent_system.environments.env_package.search.corpus import Corpus, CorpusError, iter_corpus, line_offsets
from agent_system.environments.env_package.search.index import META_FILE, IndexMeta, build_bm25_index
from agent_system.environments.env_package.search.retriever import load_retriever
from verl.utils.fs import REPO_ROOT
from tests.examples.retrieval_fixtures import corpus_slice

BUILDER = REPO_ROOT / "examples" / "search" / "retriever" / "index_builder.py"
GOOD = [{"id": "d1", "contents": '"Alpha"\nAlpha is a letter.'}, {"id": "d2", "contents": '"Beta"\nBeta follows alpha.'}]


def _write(path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines))


def _run_builder(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BUILDER), *args], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)), timeout=300)


@pytest.mark.parametrize("bad_line,message", [
    ("{broken", "not valid JSON"),
    ('["a list"]', "got list"),
    ('{"id": "d3"}', "'contents' must be a non-empty string"),
    ('{"id": "", "contents": "x"}', "'id' must be a non-empty string"),
    ("", "not valid JSON"),
])
def test_builder_names_the_bad_corpus_line_and_writes_nothing(tmp_path, bad_line, message):
    corpus = tmp_path / "corpus.jsonl"
    _write(corpus, [json.dumps(GOOD[0]), json.dumps(GOOD[1]), bad_line])
    result = _run_builder("--retrieval_method", "bm25", "--corpus_path", str(corpus), "--save_dir", str(tmp_path / "idx"))
    assert result.returncode == 2
    assert f"{corpus}:3" in result.stderr and message in result.stderr
    assert not (tmp_path / "idx").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["corpus.jsonl"]  # no scratch folder left behind


def test_builder_cli_writes_a_loadable_index(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    _write(corpus, [json.dumps(doc) for doc in GOOD])
    result = _run_builder("--retrieval_method", "bm25", "--corpus_path", str(corpus), "--save_dir", str(tmp_path / "idx"))
    assert result.returncode == 0, result.stderr
    meta = IndexMeta.load(tmp_path / "idx")
    assert (meta.method, meta.num_docs, meta.corpus_path) == ("bm25", 2, str(corpus.resolve()))
    hits = load_retriever(tmp_path / "idx").search_batch(["beta"], 5)[0]
    assert [hit.document["id"] for hit in hits][0] == "d2" and len(hits) == 2  # topk capped at corpus size


def test_rebuild_replaces_the_index_atomically_and_a_failed_build_keeps_the_old_one(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    _write(corpus, [json.dumps(GOOD[0])])
    build_bm25_index(corpus, tmp_path / "idx")
    _write(corpus, [json.dumps(doc) for doc in GOOD])
    build_bm25_index(corpus, tmp_path / "idx")
    assert IndexMeta.load(tmp_path / "idx").num_docs == 2
    _write(corpus, [json.dumps(GOOD[0]), "{bad"])
    with pytest.raises(CorpusError, match=":2"):
        build_bm25_index(corpus, tmp_path / "idx")
    assert IndexMeta.load(tmp_path / "idx").num_docs == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.jsonl", "idx"]


def test_builder_rejects_an_empty_corpus_and_bad_flags(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("")
    result = _run_builder("--retrieval_method", "bm25", "--corpus_path", str(corpus), "--save_dir", str(tmp_path / "i"))
    assert result.returncode == 2 and "empty" in result.stderr
    result = _run_builder("--retrieval_method", "bm25", "--corpus_path", str(corpus), "--save_dir", "x", "--model", "m")
    assert result.returncode == 2 and "--model applies to --retrieval_method dense only" in result.stderr


def test_dense_index_metadata_and_search(dense_index):
    meta = IndexMeta.load(dense_index)
    assert meta.method == "dense" and meta.model == "all-MiniLM-L6-v2" and meta.dim == 384
    assert (dense_index / "dense.index").is_file()
    retriever = load_retriever(dense_index)
    hits = retriever.search_batch(["Gary Groth comic book editor", "The Comics Journal magazine"], 2)
    assert [len(per_query) for per_query in hits] == [2, 2]
    assert hits[0][0].score >= hits[0][1].score


def test_loading_with_a_different_corpus_is_refused(tmp_path, bm25_index):
    with pytest.raises(ValueError, match="has 400 rows but corpus .* has 2 lines"):
        corpus = tmp_path / "other.jsonl"
        _write(corpus, [json.dumps(doc) for doc in GOOD])
        load_retriever(bm25_index, corpus_path=corpus)
    with pytest.raises(ValueError, match="holds a bm25 index"):
        load_retriever(bm25_index, retriever_name="dense")


def test_bad_index_paths_explain_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="index_builder.py"):
        load_retriever(tmp_path / "missing")
    (tmp_path / "e5_Flat.index").write_bytes(b"")
    with pytest.raises(ValueError, match="--retriever_model and --corpus_path"):
        load_retriever(tmp_path / "e5_Flat.index")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / META_FILE).write_text("{oops")
    with pytest.raises(ValueError, match="rebuild the index"):
        load_retriever(tmp_path / "broken")


def test_corpus_offsets_handle_a_missing_final_newline(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps(GOOD[0]) + "\n" + json.dumps(GOOD[1]))
    assert line_offsets(path).tolist()[0] == 0 and len(Corpus(path)) == 2
    assert Corpus(path).get(1) == GOOD[1] and list(iter_corpus(path)) == GOOD
    assert len(Corpus(corpus_slice(tmp_path, 7))) == 7
