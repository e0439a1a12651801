"""The vLLM engine's suite (``bash scripts/run_tests.sh --vllm``, in ``.venv-vllm``).

Engines take 5-30 s to start on CPU, so each model gets one engine for the whole module; tests that
change its weights put the original ones back. KV caches are kept small and the in-process engines run
with one torch thread: on a shared, oversubscribed 2-core machine two OpenMP threads spin-wait for each
other and decode several times slower.
"""

from __future__ import annotations

import gc

import pytest
import torch
from transformers import AutoModelForCausalLM

from tests.conftest import trainer_config
from verl.protocol import DataProto
from verl.utils.model import eos_token_ids, load_tokenizer, resolve_model_path

KV_CACHE_GIB = 0.25
RESPONSE_LENGTH = 12
PROMPT_LENGTH = 96
MESSAGES = [
    "You are in the middle of a room. Your task is to: put a clean mug in the coffeemachine.",
    "Which river flows through the capital of Austria?",
    "go to countertop 2",
    "Say one word.",
]


def engine_config(**overrides):
    keys = [f"actor_rollout_ref.rollout.{k}={v}" for k, v in {"kv_cache_memory_gib": KV_CACHE_GIB, **overrides}.items()]
    return trainer_config(keys).actor_rollout_ref.rollout


def make_engine(model_dir: str, **overrides):
    from verl.workers.rollout.vllm_rollout import VLLMRollout

    tokenizer = load_tokenizer(model_dir)
    return VLLMRollout(model_dir, engine_config(**overrides), dtype=torch.float32, device=torch.device("cpu"),
                       pad_token_id=tokenizer.pad_token_id, eos_token_ids=eos_token_ids(tokenizer, model_dir),
                       prompt_length=PROMPT_LENGTH, response_length=RESPONSE_LENGTH)


def chat_prompts(model_dir: str, messages: list[str] = MESSAGES, **meta) -> DataProto:
    """Left-padded chat prompts, as the multi-turn loop builds them."""
    tokenizer = load_tokenizer(model_dir)
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": m}], tokenize=False,
                                           add_generation_prompt=True) for m in messages]
    enc = tokenizer(texts, return_tensors="pt", padding="max_length", max_length=PROMPT_LENGTH,
                    add_special_tokens=False)
    return DataProto.from_dict({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]},
                               meta_info={"do_sample": False, "seed": 0, **meta})


def hf_weights(model_dir: str) -> dict[str, torch.Tensor]:
    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).state_dict()


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _engine(model_dir: str):
    engine = make_engine(model_dir)
    yield engine
    del engine
    gc.collect()  # free weights and KV cache before the training tests start their own engines


@pytest.fixture(scope="module")
def tiny_engine(tiny_model_dir):
    yield from _engine(tiny_model_dir)


@pytest.fixture(scope="session")
def smollm_dir() -> str:
    return resolve_model_path("smollm2-135m-instruct")


@pytest.fixture(scope="module")
def smollm_engine(smollm_dir):
    yield from _engine(smollm_dir)
