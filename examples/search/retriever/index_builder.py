"""Build a BM25 or dense retrieval index from a JSON-lines passage corpus.

    python examples/search/retriever/index_builder.py --retrieval_method bm25 \\
        --corpus_path corpus.jsonl --save_dir indexes/bm25
    python examples/search/retriever/index_builder.py --retrieval_method dense \\
        --corpus_path corpus.jsonl --save_dir indexes/minilm [--model intfloat/e5-base-v2]

The work is done by ``agent_system.environments.env_package.search.index``; see docs/search.md.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from agent_system.environments.env_package.search.encoder import DEFAULT_DENSE_MODEL
from agent_system.environments.env_package.search.index import build_bm25_index, build_dense_index


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--retrieval_method", choices=("bm25", "dense"), required=True)
    parser.add_argument("--corpus_path", required=True, help='JSON lines {"id", "contents": "\\"Title\\"\\ntext"}')
    parser.add_argument("--save_dir", required=True, help="index folder to write (replaced atomically)")
    parser.add_argument("--model", default=None,
                        help=f"dense encoder, hub name or local path (default: {DEFAULT_DENSE_MODEL}, bundled)")
    parser.add_argument("--faiss_type", default="Flat", help="faiss.index_factory string, e.g. Flat or HNSW64")
    parser.add_argument("--batch_size", type=int, default=64, help="dense encoding batch size")
    parser.add_argument("--max_length", type=int, default=None, help="dense encoder max tokens per passage")
    parser.add_argument("--device", default=None, help="dense encoder device (default: cuda if available)")
    args = parser.parse_args(argv)
    if args.retrieval_method == "bm25" and args.model is not None:
        parser.error("--model applies to --retrieval_method dense only")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        if args.retrieval_method == "bm25":
            meta = build_bm25_index(args.corpus_path, args.save_dir)
        else:
            meta = build_dense_index(
                args.corpus_path, args.save_dir, model=args.model, faiss_type=args.faiss_type,
                batch_size=args.batch_size, max_length=args.max_length, device=args.device,
            )
    except ValueError as error:  # bad corpus line, empty corpus, bad --faiss_type
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {meta.method} index of {meta.num_docs} passages to {Path(args.save_dir).resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
