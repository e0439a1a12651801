"""Tiny offline models: built deterministically, loaded through the same path as a real model."""

import dataclasses
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from tokenizers import Tokenizer
from transformers import (
    AutoImageProcessor,
    AutoModelForImageTextToText,
    LogitsProcessor,
    LogitsProcessorList,
    Qwen2ForCausalLM,
)

from verl.utils.model import eos_token_ids, ensure_pad_token, load_causal_lm, load_tokenizer
from verl.utils.tiny_model import STAMP_FILE, TinyModelConfig, build_tiny_model, main

SAMPLES = [
    "go to countertop 2",
    "naïve café in Zürich — Москва, 東京 and 서울 🙂",
    "tabs\tand\n\nnewlines   with  spaces, 3.14 and 1,000,000",
    "<think>reason</think><action>open fridge 1</action>",
]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def tokenizer(tiny_dir):
    return load_tokenizer(str(tiny_dir))


def test_loads_like_a_real_model(tiny_dir, tokenizer):
    model = load_causal_lm(str(tiny_dir), dtype=torch.float32)
    assert isinstance(model, Qwen2ForCausalLM)
    assert model.dtype == torch.float32
    assert model.config.hidden_size // model.config.num_attention_heads == 32
    assert (tiny_dir / "model.safetensors").is_file()
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert tokenizer.eos_token_id == im_end == model.config.eos_token_id
    assert tokenizer.pad_token == "<|endoftext|>" and tokenizer.pad_token_id != im_end
    assert tokenizer.padding_side == "left"
    assert eos_token_ids(tokenizer, str(tiny_dir)) == [im_end]


def test_chat_template_renders_chatml(tokenizer):
    messages = [{"role": "user", "content": "hi"}]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert rendered == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    with_system = [
        {"role": "system", "content": "be brief"},
        *messages,
        {"role": "assistant", "content": "ok"},
    ]
    rendered = tokenizer.apply_chat_template(with_system, tokenize=False)
    assert rendered == (
        "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
        "<|im_start|>assistant\nok<|im_end|>\n"
    )


def test_encode_decode_round_trip(tokenizer):
    for text in SAMPLES:
        assert tokenizer.decode(tokenizer.encode(text)) == text
    for special in ("<|im_start|>", "<|im_end|>", "<|endoftext|>"):
        assert len(tokenizer.encode(special)) == 1


def test_loaded_tokenizer_encodes_like_the_trained_one(tiny_dir, tokenizer):
    # AutoTokenizer rebuilds qwen2 tokenizers with Qwen's own pipeline; training must have used the same one.
    trained = Tokenizer.from_file(str(tiny_dir / "tokenizer.json"))
    for text in SAMPLES:
        assert tokenizer.encode(text) == trained.encode(text).ids


class ForceTokenAt(LogitsProcessor):
    """Greedy decoding picks ``token_id`` once ``position`` tokens exist, and never before."""

    def __init__(self, token_id: int, position: int):
        self.token_id, self.position = token_id, position

    def __call__(self, input_ids, scores):
        forced = torch.full_like(scores, float("-inf"))
        if input_ids.shape[1] == self.position:
            forced[:, self.token_id] = 0.0
            return forced
        forced.copy_(scores)
        forced[:, self.token_id] = float("-inf")
        return forced


def test_generate_stops_at_im_end(tiny_dir, tokenizer):
    model = load_causal_lm(str(tiny_dir), dtype=torch.float32)
    prompts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
        )
        for text in ("short", "a much longer prompt than the other one")
    ]
    batch = tokenizer(prompts, return_tensors="pt", padding=True)
    prompt_len = batch["input_ids"].shape[1]
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    out = model.generate(
        **batch,
        max_new_tokens=12,
        do_sample=False,
        logits_processor=LogitsProcessorList([ForceTokenAt(im_end, prompt_len + 3)]),
    )
    new_tokens = out[:, prompt_len:]
    assert new_tokens.shape[1] == 4  # three free tokens, then <|im_end|> ends generation
    assert (new_tokens[:, -1] == im_end).all()
    assert (new_tokens[:, :-1] != im_end).all()


def test_same_knobs_same_files_and_early_return(tmp_path):
    first, second = build_tiny_model(tmp_path / "first"), build_tiny_model(tmp_path / "second")
    reference = load_file(first / "model.safetensors")
    rebuilt = load_file(second / "model.safetensors")
    assert reference.keys() == rebuilt.keys()
    assert all(torch.equal(reference[name], rebuilt[name]) for name in reference)
    assert (first / "tokenizer.json").read_text() == (second / "tokenizer.json").read_text()

    before = os.stat(second / "model.safetensors")
    assert build_tiny_model(second) == second
    after = os.stat(second / "model.safetensors")
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)


def test_other_knobs_rebuild_in_place(tiny_dir, tmp_path):
    out = build_tiny_model(tmp_path / "m", seed=1)
    weights_seed1 = load_file(out / "model.safetensors")
    assert build_tiny_model(out, seed=2) == out
    stamp = json.loads((out / STAMP_FILE).read_text())
    assert stamp["knobs"]["seed"] == 2
    weights_seed2 = load_file(out / "model.safetensors")
    name = "model.embed_tokens.weight"
    assert not torch.equal(weights_seed1[name], weights_seed2[name])
    assert not torch.equal(weights_seed1[name], load_file(tiny_dir / "model.safetensors")[name])
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp folders left


def test_build_leaves_caller_rng_alone(tmp_path):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_tiny_model(tmp_path / "m", seed=5)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize(
    "knobs, message",
    [
        (dict(hidden_size=64, num_heads=4), "head_dim"),
        (dict(hidden_size=60, num_heads=2), "head_dim"),
        (dict(hidden_size=100, num_heads=3), "divisible by num_heads"),
        (dict(hidden_size=33, num_heads=1), "even"),
        (dict(num_heads=2, num_kv_heads=3), "num_kv_heads"),
        (dict(vocab_size=200), "vocab_size"),
        (dict(num_layers=0), "positive"),
    ],
)
def test_bad_knobs_rejected(knobs, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        TinyModelConfig(**knobs)
    with pytest.raises(ValueError, match=message):
        build_tiny_model(tmp_path / "m", **knobs)
    assert not (tmp_path / "m").exists()


def test_unknown_knob_and_foreign_folder(tmp_path):
    with pytest.raises(TypeError, match="hidden_dim"):
        build_tiny_model(tmp_path / "m", hidden_dim=64)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not built by"):
        build_tiny_model(foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"
    with pytest.raises(FileExistsError, match="not built by"):
        build_tiny_model(foreign / "notes.txt")
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_cli(tmp_path, capsys):
    main([str(tmp_path / "cli"), "--seed", "3", "--num_layers", "1"])
    assert capsys.readouterr().out.strip() == str(tmp_path / "cli")
    stamp = json.loads((tmp_path / "cli" / STAMP_FILE).read_text())
    assert stamp["knobs"] == {**dataclasses.asdict(TinyModelConfig()), "seed": 3, "num_layers": 1}
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "bad"), "--num_heads", "4"])
    assert exit_info.value.code == 2
    assert "head_dim" in capsys.readouterr().err


def test_pad_moved_off_eos(tokenizer):
    eos = tokenizer.eos_token_id
    tokenizer = load_tokenizer(tokenizer.name_or_path)
    tokenizer.pad_token = tokenizer.eos_token
    ensure_pad_token(tokenizer, [eos])
    assert tokenizer.pad_token == "<|endoftext|>"


def test_vision_model_runs_an_image(tmp_path):
    out = build_tiny_model(tmp_path / "vl", vision=True, num_layers=1)
    tokenizer = load_tokenizer(str(out))
    image_processor = AutoImageProcessor.from_pretrained(out)
    model = AutoModelForImageTextToText.from_pretrained(out, dtype=torch.float32)

    image = Image.fromarray((np.random.default_rng(0).random((56, 84, 3)) * 255).astype("uint8"))
    pixels = image_processor(images=[image], return_tensors="pt")
    merge = image_processor.merge_size
    n_image_tokens = int(pixels["image_grid_thw"][0].prod()) // merge**2
    content = [{"type": "image"}, {"type": "text", "text": "what is shown?"}]
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": content}], tokenize=False)
    assert "<|vision_start|><|image_pad|><|vision_end|>what is shown?" in prompt
    expanded = prompt.replace("<|image_pad|>", "<|image_pad|>" * n_image_tokens)
    batch = tokenizer([expanded], return_tensors="pt")
    logits = model(**batch, **pixels).logits
    assert logits.shape == (1, batch["input_ids"].shape[1], model.config.text_config.vocab_size)
    assert torch.isfinite(logits).all()
