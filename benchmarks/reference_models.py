"""Model folders shaped like Qwen2.5-0.5B/3B/7B-Instruct, written locally (no download, no real weights).

    python -m benchmarks.reference_models 3b DIR [--weights]

writes ``DIR/config.json`` from the published architecture numbers, enough for
``python -m verl.utils.memory_plan actor_rollout_ref.model.path=DIR ...``; with ``--weights`` also random
bf16 weights and the tiny model's locally trained tokenizer (its ids are a prefix of the model's
vocabulary), so the trainer's loading path runs on the folder (``benchmarks/device_check.py``).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, Qwen2Config

from verl.utils.fs import cache_dir
from verl.utils.tiny_model import build_tiny_model

# hidden, intermediate, layers, heads, kv heads, vocab, tied embeddings (the models' config.json files)
QWEN25 = {
    "0.5b": (896, 4864, 24, 14, 2, 151936, True),
    "3b": (2048, 11008, 36, 16, 2, 151936, True),
    "7b": (3584, 18944, 28, 28, 4, 152064, False),
}
PAD_ID, EOS_ID = 0, 2  # the tiny tokenizer's <|endoftext|> and <|im_end|>


def qwen25_config(size: str) -> Qwen2Config:
    hidden, intermediate, layers, heads, kv_heads, vocab, tied = QWEN25[size]
    return Qwen2Config(hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
                       num_attention_heads=heads, num_key_value_heads=kv_heads, vocab_size=vocab,
                       tie_word_embeddings=tied, max_position_embeddings=32768, rms_norm_eps=1e-6,
                       rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0}, bos_token_id=None,
                       eos_token_id=EOS_ID, pad_token_id=PAD_ID, dtype=torch.bfloat16)


def write_model_folder(size: str, out: Path, weights: bool = False, device: str = "cpu") -> Path:
    out.mkdir(parents=True, exist_ok=True)
    config = qwen25_config(size)
    if not weights:
        config.save_pretrained(out)
        return out
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.generation_config.eos_token_id, model.generation_config.pad_token_id = [EOS_ID], PAD_ID
    model.save_pretrained(out)
    tiny = build_tiny_model(cache_dir() / "models" / "tiny-qwen2-tokenizer")
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (tiny / name).exists():
            shutil.copy(tiny / name, out / name)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("size", choices=sorted(QWEN25))
    parser.add_argument("out", type=Path)
    parser.add_argument("--weights", action="store_true", help="also random bf16 weights and a tokenizer")
    args = parser.parse_args()
    print(write_model_folder(args.size, args.out, args.weights))


if __name__ == "__main__":
    main()
