"""Building retrieval indexes, and the metadata file that makes an index folder self-describing.

An index is a folder (``--save_dir``) holding ``index_meta.json`` plus either ``bm25/`` (a ``bm25s``
index with its tokenizer vocabulary) or ``dense.index`` (a FAISS index of L2-normalised embeddings,
inner-product metric). Row ``i`` of either is line ``i + 1`` of the corpus file named in the metadata.
The folder is written next to its final place and renamed into it, so readers never see half an index.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from agent_system.environments.env_package.search.corpus import iter_corpus
from agent_system.environments.env_package.search.encoder import DEFAULT_DENSE_MODEL, DenseEncoder
from verl.utils.fs import atomic_dir

logger = logging.getLogger(__name__)

META_FILE = "index_meta.json"
BM25_SUBDIR = "bm25"
DENSE_FILE = "dense.index"
BM25_STEMMER = "english"
BM25_STOPWORDS = "en"
_CHUNK = 4096

Method = Literal["bm25", "dense"]


@dataclass(frozen=True)
class IndexMeta:
    """What a retriever needs to know to load and query an index folder."""

    method: Method
    num_docs: int
    corpus_path: str
    model: str | None = None  # dense: hub name or path given at build time
    query_prefix: str = ""
    passage_prefix: str = ""
    faiss_type: str | None = None
    dim: int | None = None

    def save(self, folder: Path) -> None:
        (folder / META_FILE).write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path) -> IndexMeta:
        path = folder / META_FILE
        try:
            raw = json.loads(path.read_text())
            meta = cls(**raw)
        except (OSError, ValueError, TypeError) as error:
            raise ValueError(
                f"{path} is not a readable index description ({error}); rebuild the index with "
                "examples/search/retriever/index_builder.py"
            ) from None
        if meta.method not in ("bm25", "dense"):
            raise ValueError(f"{path}: unknown method {meta.method!r}; rebuild the index")
        return meta


def find_index_folder(index_path: str | os.PathLike) -> Path | None:
    """The folder holding ``index_meta.json`` for a path to the folder or to a file/folder inside it."""
    path = Path(index_path)
    for candidate in (path, path.parent):
        if (candidate / META_FILE).is_file():
            return candidate
    return None


def _chunks(corpus_path: Path) -> Iterator[list[str]]:
    chunk: list[str] = []
    for document in iter_corpus(corpus_path):
        chunk.append(document["contents"])
        if len(chunk) == _CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _portable_model_name(model: str | None) -> str:
    """The model as stored in the metadata: the default's name, an absolute path, or a hub name."""
    if model is None:
        return DEFAULT_DENSE_MODEL
    return str(Path(model).resolve()) if Path(model).is_dir() else model


def bm25_tokenizer():
    """The tokenizer used for passages and queries alike: English stop words + Snowball stemmer."""
    import Stemmer
    from bm25s.tokenization import Tokenizer

    return Tokenizer(stopwords=BM25_STOPWORDS, stemmer=Stemmer.Stemmer(BM25_STEMMER))


def build_bm25_index(corpus_path: str | os.PathLike, save_dir: str | os.PathLike) -> IndexMeta:
    """Tokenize the corpus chunk by chunk and write a ``bm25s`` index folder."""
    import bm25s
    from bm25s.tokenization import Tokenized

    corpus_path = Path(corpus_path).resolve()
    tokenizer = bm25_tokenizer()
    token_ids: list[list[int]] = []
    for chunk in _chunks(corpus_path):
        token_ids.extend(tokenizer.tokenize(chunk, update_vocab=True, return_as="ids", show_progress=False))
        logger.info("tokenized %d passages", len(token_ids))
    if not token_ids:
        raise ValueError(f"corpus {corpus_path} is empty; it needs at least one passage")
    model = bm25s.BM25()
    model.index(Tokenized(ids=token_ids, vocab=tokenizer.get_vocab_dict()), show_progress=False)
    meta = IndexMeta(method="bm25", num_docs=len(token_ids), corpus_path=str(corpus_path))
    with atomic_dir(Path(save_dir)) as scratch:
        model.save(scratch / BM25_SUBDIR, show_progress=False)
        tokenizer.save_vocab(scratch / BM25_SUBDIR)
        tokenizer.save_stopwords(scratch / BM25_SUBDIR)
        meta.save(scratch)
    return meta


def build_dense_index(corpus_path: str | os.PathLike, save_dir: str | os.PathLike, *,
                      model: str | None = None, faiss_type: str = "Flat", batch_size: int = 64,
                      max_length: int | None = None, device: str | None = None) -> IndexMeta:
    """Embed every passage and write a FAISS index (``faiss_type`` is a ``faiss.index_factory`` string)."""
    import faiss

    corpus_path = Path(corpus_path).resolve()
    encoder = DenseEncoder(model, device=device, batch_size=batch_size, max_length=max_length)
    parts = []
    for chunk in _chunks(corpus_path):
        parts.append(encoder.encode_passages(chunk))
        logger.info("embedded %d passages on %s", sum(len(part) for part in parts), encoder.device)
    if not parts:
        raise ValueError(f"corpus {corpus_path} is empty; it needs at least one passage")
    embeddings = np.concatenate(parts)
    try:
        index = faiss.index_factory(encoder.dim, faiss_type, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as error:
        raise ValueError(f"--faiss_type {faiss_type!r} is not a faiss.index_factory string ({error})") from None
    if not index.is_trained:
        index.train(embeddings)
    index.add(embeddings)
    meta = IndexMeta(
        method="dense", num_docs=len(embeddings), corpus_path=str(corpus_path),
        model=_portable_model_name(model), query_prefix=encoder.prefixes.query,
        passage_prefix=encoder.prefixes.passage, faiss_type=faiss_type, dim=encoder.dim,
    )
    with atomic_dir(Path(save_dir)) as scratch:
        faiss.write_index(index, str(scratch / DENSE_FILE))
        meta.save(scratch)
    return meta
