"""The passage corpus: JSON lines ``{"id": str, "contents": "\\"Title\\"\\ntext"}``, one passage per line.

Row ``i`` of every index is line ``i + 1`` of the corpus file. :class:`Corpus` keeps only the byte offset
of each line in memory (8 bytes per passage, ~170 MB for the 21M-passage wiki-18 dump) and reads the
passages it returns with ``os.pread``, so it is cheap to open and safe to share between threads.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TypedDict

import numpy as np

_SCAN_CHUNK_BYTES = 64 << 20


class Document(TypedDict):
    id: str
    contents: str


class CorpusError(ValueError):
    """A corpus file that is missing or holds a line that is not a valid passage."""


def parse_corpus_line(line: bytes | str, line_no: int, path: Path) -> Document:
    """Validate one corpus line; the error names the file, the line and the expected format."""
    where = f"{path}:{line_no}"
    expected = 'expected a JSON object {"id": "...", "contents": "\\"Title\\"\\ntext"} on every line'
    try:
        row = json.loads(line)
    except ValueError as error:
        raise CorpusError(f"{where}: not valid JSON ({error}); {expected}") from None
    if not isinstance(row, dict):
        raise CorpusError(f"{where}: got {type(row).__name__}; {expected}")
    doc_id, contents = row.get("id"), row.get("contents")
    if isinstance(doc_id, int) and not isinstance(doc_id, bool):
        doc_id = str(doc_id)
    if not isinstance(doc_id, str) or not doc_id:
        raise CorpusError(f"{where}: 'id' must be a non-empty string, got {doc_id!r}; {expected}")
    if not isinstance(contents, str) or not contents.strip():
        raise CorpusError(f"{where}: 'contents' must be a non-empty string, got {contents!r}; {expected}")
    return Document(id=doc_id, contents=contents)


def _existing_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"corpus file {path} does not exist; pass the JSON-lines passage file (--corpus_path)")
    return path


def iter_corpus(path: str | os.PathLike) -> Iterator[Document]:
    """Every passage of the file in order, validated (the index builder's reader)."""
    path = _existing_file(path)
    with path.open("rb") as handle:
        for line_no, line in enumerate(handle, start=1):
            yield parse_corpus_line(line, line_no, path)


def line_offsets(path: Path) -> np.ndarray:
    """Byte offset of the start of every line, plus the file size as a final sentinel."""
    newline_positions = []
    with path.open("rb") as handle:
        position = 0
        while chunk := handle.read(_SCAN_CHUNK_BYTES):
            newline_positions.append(np.flatnonzero(np.frombuffer(chunk, dtype=np.uint8) == 10) + position)
            position += len(chunk)
    ends = np.concatenate([np.zeros(0, dtype=np.int64), *newline_positions]).astype(np.int64) + 1
    if position and (ends.size == 0 or ends[-1] != position):
        ends = np.append(ends, position)  # last line without a trailing newline
    return np.concatenate([[0], ends]).astype(np.int64)


class Corpus:
    """Random access to the passages of a corpus file by row number."""

    def __init__(self, path: str | os.PathLike):
        self.path = _existing_file(path).resolve()
        self._offsets = line_offsets(self.path)
        self._fd = os.open(self.path, os.O_RDONLY)

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def get(self, row: int) -> Document:
        start, end = int(self._offsets[row]), int(self._offsets[row + 1])
        return parse_corpus_line(os.pread(self._fd, end - start, start), row + 1, self.path)

    def close(self) -> None:
        if getattr(self, "_fd", -1) >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        self.close()
