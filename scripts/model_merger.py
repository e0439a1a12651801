"""Turn a sharded FSDP actor checkpoint into a Hugging Face model folder for release.

    python scripts/model_merger.py merge --backend fsdp \
        --local_dir checkpoints/<project>/<experiment>/global_step_N/actor --target_dir OUT [--dtype bfloat16]

``local_dir`` is what the trainer writes: ``dcp/`` (torch.distributed.checkpoint shards of every rank)
and ``huggingface/`` (config, generation config, tokenizer). Only the model weights are read (not the
optimizer state), directly into a model built from the saved config, in a single process and any world
size. OUT receives safetensors + config + tokenizer, written to a temporary folder first and renamed,
so an interrupted merge never leaves a half-written model. ``AutoModelForCausalLM.from_pretrained(OUT)``
then reproduces the trained actor's logits (``AutoModelForImageTextToText`` for a Qwen2.5-VL actor, whose
image processor settings are copied too).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText, AutoTokenizer, GenerationConfig

from verl.utils.fs import atomic_dir

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def fail(message: str) -> None:
    print(f"model_merger: {message}", file=sys.stderr)
    sys.exit(2)


def load_merged_model(local_dir: Path) -> torch.nn.Module:
    hf_dir, dcp_dir = local_dir / "huggingface", local_dir / "dcp"
    if not (hf_dir / "config.json").exists() or not (dcp_dir / ".metadata").exists():
        fail(f"{local_dir} is not an actor checkpoint folder (need huggingface/config.json and dcp/.metadata); "
             "pass --local_dir <default_local_dir>/global_step_N/actor")
    config = AutoConfig.from_pretrained(hf_dir)
    auto = AutoModelForImageTextToText if getattr(config, "vision_config", None) is not None else AutoModelForCausalLM
    with torch.device("meta"):
        model = auto.from_config(config, dtype=torch.float32)
    model.to_empty(device="cpu")
    state = {"model": model.state_dict()}
    dcp.load(state, checkpoint_id=str(dcp_dir), no_dist=True)  # fills the tensors in place
    model.tie_weights()
    return model.eval()


def merge(local_dir: Path, target_dir: Path, dtype: torch.dtype) -> None:
    model = load_merged_model(local_dir).to(dtype)
    hf_dir = local_dir / "huggingface"
    with atomic_dir(target_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        AutoTokenizer.from_pretrained(hf_dir).save_pretrained(tmp)
        if (hf_dir / "generation_config.json").exists():
            GenerationConfig.from_pretrained(hf_dir).save_pretrained(tmp)
        if (hf_dir / "preprocessor_config.json").exists():  # a vision-language model's image processor
            (tmp / "preprocessor_config.json").write_bytes((hf_dir / "preprocessor_config.json").read_bytes())
    print(f"merged {local_dir} -> {target_dir}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("merge", help="merge FSDP shards into a Hugging Face folder")
    m.add_argument("--backend", default="fsdp", help="checkpoint backend (fsdp)")
    m.add_argument("--local_dir", required=True, type=Path, help=".../global_step_N/actor")
    m.add_argument("--target_dir", required=True, type=Path, help="output Hugging Face folder")
    m.add_argument("--dtype", default="float32", choices=sorted(DTYPES), help="dtype of the saved weights")
    args = parser.parse_args(argv)
    if args.backend != "fsdp":
        fail(f"--backend {args.backend} is not supported; SkillZero writes FSDP checkpoints (--backend fsdp)")
    merge(args.local_dir.expanduser(), args.target_dir.expanduser(), DTYPES[args.dtype])


if __name__ == "__main__":
    main()
