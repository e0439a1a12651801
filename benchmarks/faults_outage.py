"""Scenario ``retriever_outage`` of benchmarks/faults.py (issue 15 item 3): the retrieval server goes away
during Search-QA training.

The real retrieval server (``examples/search/retriever/retrieval_server.py``, BM25 over the first 400
passages of the bundled corpus) runs as a child process on a free loopback port; the real CLI trains on
Search-QA against it (tiny model, ``env.search.max_retries=1``, a small ``env.search.max_outage_s``). The
random tiny model never writes a valid ``<search>`` block, so no query would ever reach the server: the
scenario first fine-tunes the tiny model to answer every prompt with ``<search>``, ``apple`` and
``</search>`` on three lines (:func:`searching_tiny_model`, built once into the cache; the run cuts
prompts to their last 48 tokens, ``data.truncation=left``, and the fine-tuning sees prompts of that
length); every turn but the last then sends a query.

Once training runs, the server is killed (SIGKILL) for ``outages_s[0]`` seconds, restarted on the same
port, killed for ``outages_s[1]`` seconds, restarted, and killed for good. Figures: steps lost in the
ridden-out outages (steps missing from metrics.jsonl, or a run that stopped during them: must be 0),
``search/errors`` counted in the rows of the steps that overlapped each outage, and for the permanent
outage the time from the kill to the run's stop against ``env.search.max_outage_s``, the exit status and
the message.
"""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.faults_kill import RunFolder, kill_session, start
from verl.utils.fs import REPO_ROOT

SEARCH_TARGET = "<search>\napple\n</search>"  # each token of it has one successor: quick to learn
SFT_STEPS = 120
PROMPT_TOKENS = 48  # data.max_prompt_length of the run: prompts are cut from the left to their last 48 tokens
STOP_LINE = "SkillZero stopped:"
def searching_tiny_model(work: Path, seed: int) -> Path:
    """The tiny model fine-tuned (cross-entropy on the answer only) to answer any chat prompt, cut to its
    last :data:`PROMPT_TOKENS` tokens as the run cuts them, with :data:`SEARCH_TARGET` and end-of-turn.
    Built once into the SkillZero cache (a few minutes on a loaded 2-core box), keyed by its recipe."""
    from verl.utils.fs import cache_dir
    from verl.utils.model import build_dir_atomically
    from verl.utils.tiny_model import build_tiny_model

    recipe = json.dumps({"target": SEARCH_TARGET, "steps": SFT_STEPS, "prompt_tokens": PROMPT_TOKENS, "seed": seed})
    stamp = "searching_recipe.json"
    target = cache_dir() / "models" / f"tiny-qwen2-searching-{hashlib.sha256(recipe.encode()).hexdigest()[:12]}"
    base = build_tiny_model(work / "tiny-qwen2")

    def build(tmp: Path) -> None:
        _fine_tune(base, tmp, random.Random(seed), seed)
        (tmp / stamp).write_text(recipe)

    return build_dir_atomically(target, build, lambda path: (path / stamp).exists())


def _fine_tune(base: Path, out: Path, rng: random.Random, seed: int) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base)
    words = (REPO_ROOT / "agent_system/environments/prompts/search.py").read_text().split()
    answer = tokenizer(SEARCH_TARGET + tokenizer.eos_token, add_special_tokens=False).input_ids
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(SFT_STEPS):
        rows = []
        for _ in range(8):
            text = " ".join(rng.choice(words) for _ in range(rng.randint(1, 60)))
            prompt = tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                                   add_generation_prompt=True)
            rows.append(tokenizer(prompt, add_special_tokens=False).input_ids[-PROMPT_TOKENS:])
        width = max(len(ids) for ids in rows) + len(answer)
        inputs = torch.full((len(rows), width), tokenizer.pad_token_id)
        labels = torch.full((len(rows), width), -100)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for row, ids in enumerate(rows):  # left padding, as the rollout engine pads prompts
            full = ids + answer
            inputs[row, width - len(full):] = torch.tensor(full)
            labels[row, width - len(answer):] = torch.tensor(answer)
            mask[row, width - len(full):] = 1
        loss = model(input_ids=inputs, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def search_args(model: Path, slots: Path, out_dir: Path, url: str, max_outage_s: float) -> list[str]:
    return ["env.env_name=search", f"env.search.search_url={url}", "env.search.max_retries=1",
            "env.search.retry_backoff=0.2", "env.search.timeout=5", f"env.search.max_outage_s={max_outage_s}",
            "env.max_steps=3", "env.history_length=2", "env.rollout.n=2", f"actor_rollout_ref.model.path={model}",
            f"data.train_files={slots / 'train.parquet'}", f"data.val_files={slots / 'test.parquet'}",
            "data.train_batch_size=2", "data.val_batch_size=4", f"data.max_prompt_length={PROMPT_TOKENS}",
            "data.max_response_length=24", "actor_rollout_ref.actor.ppo_mini_batch_size=2",
            "actor_rollout_ref.actor.optim.lr=1e-6", "trainer.total_training_steps=1000", "trainer.test_freq=-1",
            "trainer.save_freq=-1", "trainer.val_before_train=False", "trainer.logger=[file]",
            f"trainer.default_local_dir={out_dir}", "trainer.resume_mode=disable", "ray_init.num_cpus=4"]


def _wait_rows(proc: subprocess.Popen, folder: RunFolder, rows: int, timeout_s: float = 900) -> bool:
    deadline = time.monotonic() + timeout_s
    while len(folder.rows()) < rows and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return len(folder.rows()) >= rows


def scenario_retriever_outage(work: Path, index: Path, outages_s: tuple[float, float], max_outage_s: float,
                              seed: int) -> dict[str, Any]:
    """``index``: the BM25 index folder the server serves."""
    from agent_system.environments.env_package.search.server_process import RetrievalServer

    model = searching_tiny_model(work, seed)
    slots = work / "search_slots"
    if not (slots / "train.parquet").exists():
        subprocess.run([sys.executable, str(REPO_ROOT / "examples/data_preprocess/preprocess_search_r1_dataset.py"),
                        "--local_dir", str(slots)], check=True, capture_output=True)
    out_dir, log = work / "outage_run", work / "outage_run.log"
    folder = RunFolder(out_dir)
    server = RetrievalServer(index)
    proc = start(search_args(model, slots, out_dir, server.url, max_outage_s), log)
    windows: list[dict[str, Any]] = []
    try:
        ready = _wait_rows(proc, folder, 1)
        for seconds in outages_s if ready else ():
            before = len(folder.rows())
            server.kill()
            down = time.monotonic()
            while time.monotonic() - down < seconds and proc.poll() is None:
                time.sleep(0.05)
            server.start()
            windows.append({"seconds": seconds, "rows_before": before, "rows_at_restart": len(folder.rows()),
                            "down_s": round(time.monotonic() - down, 1)})
            if not _wait_rows(proc, folder, len(folder.rows()) + 2):
                break  # the run stopped (or hung) during a ridden-out outage: counted below
        alive_after_ridden = proc.poll() is None
        rows_before_permanent = len(folder.rows())
        server.kill()
        down = time.monotonic()
        stop_line_s = None
        while proc.poll() is None and time.monotonic() - down < max_outage_s + 600:
            if stop_line_s is None and STOP_LINE in log.read_text(errors="replace"):
                stop_line_s = time.monotonic() - down
            time.sleep(0.05)
        exit_s = time.monotonic() - down
    finally:
        if proc.poll() is None:
            kill_session(proc)
        server.stop()
    output = log.read_text(errors="replace")
    rows = folder.rows()
    for window in windows:  # the rows logged from the kill until the run had run 2 steps after the restart
        covered = rows[window["rows_before"]: window["rows_at_restart"] + 1]
        window["steps_overlapping"] = [r["step"] for r in covered]
        window["search_errors"] = sum(r.get("search/errors", 0.0) for r in covered)
        window["search_queries"] = sum(r.get("search/queries", 0.0) for r in covered)
    steps = [r["step"] for r in rows]
    message = next((line for line in output.splitlines() if STOP_LINE in line), "")
    result: dict[str, Any] = {
        "max_outage_s": max_outage_s, "ridden_out": windows,
        "steps_lost": (len(set(range(1, max(steps, default=0) + 1)) - set(steps))
                       + (0 if alive_after_ridden and len(windows) == len(outages_s) else 1)),
        "steps_run_before_permanent_outage": rows_before_permanent,
        "permanent": {"seconds_to_message": None if stop_line_s is None else round(stop_line_s, 1),
                      "seconds_to_exit": round(exit_s, 1), "exit_code": proc.returncode,
                      "message": message[:800], "traceback": "Traceback" in output},
    }
    errors_seen = all(window["search_errors"] > 0 for window in windows)
    result["lost"] = bool(result["steps_lost"] or not errors_seen or proc.returncode in (0, None)
                          or not message or result["permanent"]["traceback"])
    if result["lost"]:
        result["output_tail"] = output[-2500:]
    return result
