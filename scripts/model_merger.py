"""Turn a sharded FSDP actor checkpoint into a Hugging Face model folder for release.

    python scripts/model_merger.py merge --backend fsdp \
        --local_dir checkpoints/<project>/<experiment>/global_step_N/actor --target_dir OUT [--dtype bfloat16] \
        [--trust_remote_code] [--lora_mode merged|adapter] [--base_model DIR]

``local_dir`` is what the trainer writes: ``dcp/`` (torch.distributed.checkpoint shards of every rank)
and ``huggingface/`` (config, generation config, tokenizer). Only the model weights are read (not the
optimizer state), directly into a model built from the saved config, in a single process and any world
size. OUT receives safetensors + config + tokenizer, written to a temporary folder first and renamed,
so an interrupted merge never leaves a half-written model. ``AutoModelForCausalLM.from_pretrained(OUT)``
then reproduces the trained actor's logits (``AutoModelForImageTextToText`` for a Qwen2.5-VL actor, whose
image processor settings are copied too).

A LoRA checkpoint (``lora/adapter_config.json`` next to ``dcp/``; see docs/lora.md) holds only the adapters;
the base model is read from the path the adapter config names (or ``--base_model``). ``--lora_mode merged``
(default) writes the merged Hugging Face model (``W + (alpha/r) B A``); ``--lora_mode adapter`` writes a
peft adapter folder (``adapter_config.json`` + ``adapter_model.safetensors`` + tokenizer) for
``PeftModel.from_pretrained(base, OUT)``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText, AutoTokenizer, GenerationConfig

from verl.utils.fs import atomic_dir
from verl.utils.lora import ADAPTER, SUBDIR, is_adapter_param

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def fail(message: str) -> None:
    print(f"model_merger: {message}", file=sys.stderr)
    sys.exit(2)


def check_actor_dir(local_dir: Path, trust_remote_code: bool) -> None:
    hf_dir = local_dir / "huggingface"
    if not (hf_dir / "config.json").exists() or not (local_dir / "dcp/.metadata").exists():
        fail(f"{local_dir} is not an actor checkpoint folder (need huggingface/config.json and dcp/.metadata); "
             "pass --local_dir <default_local_dir>/global_step_N/actor")
    if "auto_map" in json.loads((hf_dir / "config.json").read_text()) and not trust_remote_code:
        fail(f"{hf_dir / 'config.json'} names model code shipped in the folder (auto_map); "
             "pass --trust_remote_code if you trust that code (as actor_rollout_ref.model.trust_remote_code did)")


def load_merged_model(local_dir: Path, trust_remote_code: bool = False) -> torch.nn.Module:
    hf_dir, dcp_dir = local_dir / "huggingface", local_dir / "dcp"
    config = AutoConfig.from_pretrained(hf_dir, trust_remote_code=trust_remote_code)
    auto = AutoModelForImageTextToText if getattr(config, "vision_config", None) is not None else AutoModelForCausalLM
    with torch.device("meta"):
        model = auto.from_config(config, dtype=torch.float32, trust_remote_code=trust_remote_code)
    model.to_empty(device="cpu")
    state = {"model": model.state_dict()}
    dcp.load(state, checkpoint_id=str(dcp_dir), no_dist=True)  # fills the tensors in place
    model.tie_weights()
    return model.eval()


def load_lora_model(local_dir: Path, base_model: Path | None, trust_remote_code: bool) -> torch.nn.Module:
    """The base model with the checkpoint's adapters (a peft ``PeftModel``), in float32."""
    from peft import LoraConfig, get_peft_model

    peft_config = LoraConfig.from_pretrained(str(local_dir / SUBDIR))
    base = base_model or Path(peft_config.base_model_name_or_path or "")
    if not (base / "config.json").exists():
        fail(f"the base model {str(base)!r} named in {local_dir / SUBDIR}/adapter_config.json is not a Hugging Face "
             "folder here; pass --base_model DIR (the actor_rollout_ref.model.path the run trained on)")
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32, trust_remote_code=trust_remote_code)
    model = get_peft_model(model, peft_config)
    adapters = {k: v for k, v in model.state_dict().items() if is_adapter_param(k)}
    dcp.load({"model": adapters}, checkpoint_id=str(local_dir / "dcp"), no_dist=True)  # fills the tensors in place
    model.peft_config[ADAPTER].base_model_name_or_path = str(base)
    return model.eval()


def merge(local_dir: Path, target_dir: Path, dtype: torch.dtype, trust_remote_code: bool = False,
          lora_mode: str | None = None, base_model: Path | None = None) -> None:
    check_actor_dir(local_dir, trust_remote_code)
    is_lora = (local_dir / SUBDIR / "adapter_config.json").exists()
    if lora_mode == "adapter" and not is_lora:
        fail(f"--lora_mode adapter: {local_dir} holds a full model (trained with actor_rollout_ref.model.lora_rank=0), "
             "not LoRA adapters; drop --lora_mode")
    if is_lora:
        model = load_lora_model(local_dir, base_model, trust_remote_code)
        model = model.merge_and_unload() if lora_mode != "adapter" else model
    else:
        model = load_merged_model(local_dir, trust_remote_code)
    model = model.to(dtype)
    hf_dir = local_dir / "huggingface"
    with atomic_dir(target_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        AutoTokenizer.from_pretrained(hf_dir, trust_remote_code=trust_remote_code).save_pretrained(tmp)
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
    m.add_argument("--trust_remote_code", action="store_true",
                   help="for models whose code ships in their folder (as actor_rollout_ref.model.trust_remote_code)")
    m.add_argument("--lora_mode", default=None, choices=("merged", "adapter"),
                   help="LoRA checkpoints: merged Hugging Face model (default) or peft adapter folder")
    m.add_argument("--base_model", default=None, type=Path,
                   help="LoRA checkpoints: the base model folder, when it moved since training")
    args = parser.parse_args(argv)
    if args.backend != "fsdp":
        fail(f"--backend {args.backend} is not supported; SkillZero writes FSDP checkpoints (--backend fsdp)")
    merge(args.local_dir.expanduser(), args.target_dir.expanduser(), DTYPES[args.dtype], args.trust_remote_code,
          args.lora_mode, args.base_model.expanduser() if args.base_model else None)


if __name__ == "__main__":
    main()
