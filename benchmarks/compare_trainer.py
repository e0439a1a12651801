"""compare.py's trainer section: our trainer vs TRL's GRPOTrainer, raw PyTorch and bare ``generate``.

The work of one step (the issue's anchor): the embedded SmolLM2-135M-Instruct in fp32 on CPU,
``prompts_per_step`` echo-game prompts x ``group`` completions of at most ``max_response_length`` tokens,
one turn, sampling at temperature 1, learning rate 1e-6, one AdamW step over all samples in micro-batches
of ``micro_batch``, no reference model. Every side reports tokens per second (prompt + response tokens,
padding excluded, over wall seconds; the first step of every run is dropped as warm-up):
- ``ours``: the real trainer (Ray, FSDP2, hf rollout) via ``trainer_step.run_rows`` with one rank; its
  update pads each micro-batch by default, packs its sequences with ``--remove_padding``;
- ``trl``: ``trl_grpo.py`` in the separate ``.venv-bench`` (``bash benchmarks/setup_venv.sh``), same
  model, prompts, group, response length, learning rate and micro-batch;
- ``raw_fwd_bwd``: plain PyTorch in this process — forward, cross-entropy backward and one AdamW step over
  ``group x prompts_per_step`` unpadded sequences of our run's mean length, in micro-batches of ``micro_batch``;
- ``bare_generate``: ``model.generate`` in this process on the same prompts (all completions in one
  batch, as our engine does), counting response tokens up to and including EOS.
Ratios: ``ratio_vs_trl`` = ours / TRL tokens/s; ``update_vs_raw_fwd_bwd`` = our update's tokens/s
(step tokens / ``timing_s/update_actor``) / raw; ``gen_vs_bare_generate`` = our rollout's response
tokens/s (response tokens / ``timing_s/gen``) / bare generate's; ``gen_vs_bare_generate_per_decode_step``
the same per decoding step of the whole batch (longest response / seconds), which does not depend on how
long the sampled responses happened to be (tokens/s does: ``generate`` runs until the longest one ends).
"""

from __future__ import annotations

import copy
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import torch
from transformers import GenerationConfig

from agent_system.environments.echo_manager import EchoEnvironmentManager
from interleave import add_ratios, check_targets, interleave, summarize
from trainer_step import run_rows
from verl.utils.fs import REPO_ROOT
from verl.utils.model import eos_token_ids, load_causal_lm, load_tokenizer, resolve_model_path

BENCH_PYTHON = REPO_ROOT / ".venv-bench" / "bin" / "python"
TRL_SCRIPT = Path(__file__).resolve().parent / "trl_grpo.py"
ECHO_WORDS = ["apple", "river", "stone", "cloud"]  # the trainer's default env.echo.words
LR = 1e-6
TEMPERATURE = 1.0
TARGETS = {
    "ratio_vs_trl": (">=", 1.2),
    "update_vs_raw_fwd_bwd": (">=", 0.7),
    "gen_vs_bare_generate": (">=", 1 / 1.1),  # rollout at most 10% slower than bare generate
}
RATIOS = {
    "ratio_vs_trl": ("ours_tokens_per_s", "trl_tokens_per_s"),
    "update_vs_raw_fwd_bwd": ("ours_update_tokens_per_s", "raw_fwd_bwd_tokens_per_s"),
    "gen_vs_bare_generate": ("ours_gen_tokens_per_s", "bare_generate_tokens_per_s"),
    "gen_vs_bare_generate_per_decode_step": ("ours_gen_decode_steps_per_s", "bare_generate_decode_steps_per_s"),
}


def echo_prompts(count: int) -> tuple[list[str], list[str]]:
    """(prompt texts, target words) of the echo game's first turn for seeds 0..count-1, as our trainer builds them."""
    manager = EchoEnvironmentManager(count, ECHO_WORDS, max_steps=1, history_length=2)
    observation, _ = manager.reset([{"seed": seed} for seed in range(count)])
    return observation["text"], [game.word for game in manager.games]


def ours_overrides(args) -> list[str]:
    """Our trainer's settings for the shared work; ``--remove_padding`` packs sequences in the update
    (``use_remove_padding=True``, as the reference launch scripts run) instead of padding micro-batches."""
    return [f"actor_rollout_ref.actor.optim.lr={LR}", f"actor_rollout_ref.rollout.temperature={TEMPERATURE}",
            f"actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu={args.micro_batch}",
            f"actor_rollout_ref.model.use_remove_padding={args.remove_padding}"]


def ours(args, work: Path, last: dict) -> dict[str, float]:
    rows = run_rows(args.model, 1, args.steps, args.group, args.prompts_per_step, work, turns=1,
                    max_response_length=args.max_response_length, extra=ours_overrides(args))
    samples = [r["rollout/num_samples"] for r in rows]
    last["seq_len"] = statistics.mean(r["prompt_length/mean"] + r["response_length/mean"] for r in rows)
    return {
        "ours_tokens_per_s": statistics.median(r["perf/total_num_tokens"] / r["timing_s/step"] for r in rows),
        "ours_update_tokens_per_s": statistics.median(r["perf/total_num_tokens"] / r["timing_s/update_actor"]
                                                      for r in rows),
        "ours_gen_tokens_per_s": statistics.median(r["response_length/mean"] * n / r["timing_s/gen"]
                                                   for r, n in zip(rows, samples)),
        # one turn = one generate call over all samples, which runs until the longest response ends
        "ours_gen_decode_steps_per_s": statistics.median(r["response_length/max"] / r["timing_s/gen"] for r in rows),
        "ours_seconds_per_step": statistics.median(r["timing_s/step"] for r in rows),
        "ours_gen_s": statistics.median(r["timing_s/gen"] for r in rows),
        # 0 when the old log-probs come from the update's forward (one epoch over one mini-batch)
        "ours_old_log_prob_s": statistics.median(r.get("timing_s/old_log_prob", 0.0) for r in rows),
        "ours_update_s": statistics.median(r["timing_s/update_actor"] for r in rows),
    }


def trl(args, model_dir: str, work: Path) -> dict[str, float]:
    if not BENCH_PYTHON.is_file():
        raise FileNotFoundError(f"{BENCH_PYTHON} is missing; build the benchmark environment with "
                                "`bash benchmarks/setup_venv.sh` (or run compare.py --only env,retrieval)")
    count = args.prompts_per_step * (args.steps + 1)
    prompts, words = echo_prompts(count)
    spec = {"model": model_dir, "prompts": prompts, "words": words, "group": args.group,
            "prompts_per_step": args.prompts_per_step, "max_response_length": args.max_response_length,
            "lr": LR, "temperature": TEMPERATURE, "micro_batch": args.micro_batch, "steps": args.steps, "seed": 0}
    spec_path = work / "trl_spec.json"
    spec_path.write_text(json.dumps(spec))
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    done = subprocess.run([str(BENCH_PYTHON), str(TRL_SCRIPT), str(spec_path)], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the TRL run failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    steps = json.loads(done.stdout.strip().splitlines()[-1])["steps"][1:]  # drop the warm-up step
    return {"trl_tokens_per_s": statistics.median(s["tokens"] / s["seconds"] for s in steps),
            "trl_seconds_per_step": statistics.median(s["seconds"] for s in steps)}


def raw_fwd_bwd(model: torch.nn.Module, samples: int, seq_len: int, micro_batch: int) -> dict[str, float]:
    """Tokens/s of forward + backward + one AdamW step over ``samples`` sequences of ``seq_len`` tokens."""
    model = copy.deepcopy(model).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.01)
    ids = torch.randint(0, model.config.vocab_size, (samples, seq_len), generator=torch.Generator().manual_seed(0))
    started = time.perf_counter()
    for micro in ids.split(micro_batch):
        model(input_ids=micro, labels=micro).loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return {"raw_fwd_bwd_tokens_per_s": samples * seq_len / (time.perf_counter() - started)}


def bare_generate(model: torch.nn.Module, tokenizer, eos_ids: list[int], prompts: list[str], group: int,
                  max_new_tokens: int) -> dict[str, float]:
    """Response tokens/s of ``model.generate`` on every prompt ``group`` times, in one batch."""
    chats = [tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                           tokenize=False) for text in prompts for _ in range(group)]
    inputs = tokenizer(chats, return_tensors="pt", padding=True, add_special_tokens=False)
    model.generation_config = GenerationConfig()  # as our engine: only the sampling settings passed here
    started = time.perf_counter()
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=True, temperature=TEMPERATURE,
                             top_p=1.0, top_k=0, eos_token_id=eos_ids, pad_token_id=tokenizer.pad_token_id)
    seconds = time.perf_counter() - started
    responses = out[:, inputs["input_ids"].shape[1]:]
    is_eos = torch.isin(responses, torch.tensor(eos_ids))
    before_first_eos = (is_eos.long().cumsum(-1) - is_eos.long()) == 0  # tokens up to and including EOS
    return {"bare_generate_tokens_per_s": float(before_first_eos.sum()) / seconds,
            "bare_generate_decode_steps_per_s": responses.shape[1] / seconds}


def run(args) -> dict:
    """The trainer section: ``args`` carries model, steps, group, prompts_per_step, max_response_length,
    micro_batch, reps."""
    model_dir = resolve_model_path(args.model)
    tokenizer = load_tokenizer(model_dir)
    eos_ids = eos_token_ids(tokenizer, model_dir)
    model = load_causal_lm(model_dir, torch.float32)
    prompts, _ = echo_prompts(args.prompts_per_step)
    samples = args.group * args.prompts_per_step
    last: dict = {}
    with tempfile.TemporaryDirectory(prefix="compare-trainer-") as tmp:
        work = Path(tmp)
        rounds = interleave([
            lambda: ours(args, work, last),
            lambda: trl(args, model_dir, work),
            lambda: raw_fwd_bwd(model, samples, round(last["seq_len"]), args.micro_batch),
            lambda: bare_generate(model, tokenizer, eos_ids, prompts, args.group, args.max_response_length),
        ], args.reps)
    add_ratios(rounds, RATIOS)
    summary = summarize(rounds, digits=3)
    summary["targets"] = check_targets(summary, TARGETS)
    summary["setup"] = {"model": Path(model_dir).name, "dtype": "float32", "device": "cpu",
                        "prompts_per_step": args.prompts_per_step, "group": args.group,
                        "max_response_length": args.max_response_length, "lr": LR, "micro_batch": args.micro_batch,
                        "use_remove_padding": args.remove_padding,
                        "steps_per_run": args.steps, "timed_steps_per_run": args.steps - 1,
                        "torch_threads": torch.get_num_threads()}
    return summary
