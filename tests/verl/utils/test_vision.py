"""Qwen2.5-VL inputs: marker expansion, truncation guard, token/grid checks, and log-prob parity
between generation (with images) and the actor's recomputation with multimodal RoPE ids."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agent_system.multi_turn_rollout.rollout_loop import PromptBuilder, position_ids_from_mask
from agent_system.ocr.render import RenderStyle, TextRenderer
from verl.protocol import DataProto
from verl.utils.model import eos_token_ids, load_causal_lm, load_tokenizer
from verl.utils.vision import VisionInputs, VisionPrompt, require_vision_model
from verl.workers.actor import DataParallelPPOActor
from verl.workers.fsdp_utils import shard_units
from verl.workers.rollout.hf_rollout import HFRollout


@pytest.fixture(scope="module")
def vl(tiny_vl_model_dir):
    tokenizer = load_tokenizer(tiny_vl_model_dir)
    return tiny_vl_model_dir, tokenizer, VisionPrompt.from_pretrained(tokenizer, tiny_vl_model_dir)


def history_image(lines: int) -> np.ndarray:
    text = "\n".join(f"[Observation]: you see a mug {i}. [Action]: take mug {i}" for i in range(lines))
    return np.pad(TextRenderer(RenderStyle(font_size=10)).render_text(text), ((5, 5), (5, 5), (0, 0)),
                  constant_values=255)


def test_image_token_counts_follow_the_processor_grid(vl):
    _, _, vision = vl
    blank = np.full((38, 38, 3), 255, np.uint8)
    assert vision.grid(38, 38) == (1, 6, 6) and vision.image_tokens(blank) == 9  # upscaled past min_pixels
    assert vision.grid(130, 402) == (1, 10, 28) and vision.image_tokens(np.zeros((130, 402, 3), np.uint8)) == 70


def test_prompt_expansion_and_truncation_guard(vl):
    _, tokenizer, vision = vl
    image = history_image(3)
    builder = PromptBuilder(tokenizer, 512, "left", vision)
    ids = builder.token_ids("What next?", image)
    n = vision.image_tokens(image)
    assert ids.count(vision.image_pad_id) == n
    start = ids.index(vision.vision_start_id)
    assert ids[start + 1 + n] == vision.vision_end_id
    assert tokenizer.decode(ids[start + n + 2:]).startswith("What next?")
    for side in ("left", "right"):
        with pytest.raises(ValueError, match="data.max_prompt_length=20"):
            PromptBuilder(tokenizer, 20, side, vision).token_ids("What next?", image)
    with pytest.raises(ValueError, match="not a vision model"):
        PromptBuilder(tokenizer, 512, "left").token_ids("x", image)


def test_image_tokens_must_agree_with_the_grid(vl):
    model_dir, tokenizer, vision = vl
    inputs = VisionInputs(model_dir, tokenizer)
    image = history_image(2)
    ids = torch.tensor([PromptBuilder(tokenizer, 512, "left", vision).token_ids("hi", image)])
    assert set(inputs.model_inputs([image], ids)) == {"pixel_values", "image_grid_thw", "mm_token_type_ids"}
    with pytest.raises(ValueError, match="disagree with image_grid_thw"):
        inputs.model_inputs([history_image(6)], ids)


def test_text_model_is_rejected_for_the_visual_mode(tiny_model_dir, tiny_vl_model_dir):
    require_vision_model(tiny_vl_model_dir)
    with pytest.raises(ValueError, match="text-only model"):
        require_vision_model(tiny_model_dir)


def test_fsdp_shards_decoder_layers_and_vision_blocks(tiny_vl_model_dir):
    model = load_causal_lm(tiny_vl_model_dir, torch.float32)
    assert sorted({type(m).__name__ for m in shard_units(model)}) == ["Qwen2_5_VLDecoderLayer", "Qwen2_5_VLVisionBlock"]


def test_actor_log_probs_match_generation_with_images(vl):
    """Token-in/token-out with images: the log-probs the actor recomputes (full sequence, 4-row mRoPE ids)
    equal the ones sampled step by step by ``generate`` (KV cache + rope deltas), for left-padded rows of
    different image sizes."""
    model_dir, tokenizer, vision = vl
    torch.manual_seed(0)
    inputs = VisionInputs(model_dir, tokenizer)
    model = load_causal_lm(model_dir, torch.float32)
    rollout = HFRollout(model, torch.device("cpu"), tokenizer.pad_token_id, eos_token_ids(tokenizer, model_dir),
                        response_length=12, micro_batch_size=3, vision=inputs)
    images = [history_image(k) for k in (1, 4, 0)]
    texts = ["Your task is to: put a mug in the fridge.", "go on", "You won! Say something long and surprising."]
    prompts, _ = PromptBuilder(tokenizer, 256, "left", vision).build(texts, images)
    prompts.meta_info.update(do_sample=True, temperature=1.0, top_p=1.0, top_k=-1, seed=3, return_log_probs=True)
    out = rollout.generate(prompts)
    attention = torch.cat([prompts.batch["attention_mask"], out.batch["response_mask"]], dim=1)
    sample = DataProto.from_dict({
        "input_ids": torch.cat([prompts.batch["input_ids"], out.batch["responses"]], dim=1),
        "attention_mask": attention, "position_ids": position_ids_from_mask(attention),
        "responses": out.batch["responses"], "response_mask": out.batch["response_mask"],
    }, {"images": prompts.non_tensor_batch["images"]})
    actor = DataParallelPPOActor(model, None, torch.device("cpu"), 1, vision=inputs)
    logp, _ = actor.compute_log_prob(sample, micro_batch_size=2, temperature=1.0)
    mask = out.batch["response_mask"].bool()
    assert mask.sum() > 10
    torch.testing.assert_close(logp[mask], out.batch["rollout_log_probs"][mask], rtol=0, atol=1e-5)

    with pytest.raises(ValueError, match="image tokens but no images"):
        actor.compute_log_prob(DataProto(sample.batch, {}, {}), micro_batch_size=3, temperature=1.0)


def test_parity_needs_the_multimodal_rope_ids(vl, monkeypatch):
    """Sensitivity of the parity test: plain 1-D positions instead of the 4-row mRoPE ids change the
    recomputed log-probs, so a wrong position scheme cannot pass it."""
    import verl.workers.actor as actor_module

    model_dir, tokenizer, vision = vl
    inputs = VisionInputs(model_dir, tokenizer)
    model = load_causal_lm(model_dir, torch.float32)
    image = history_image(3)
    prompts, _ = PromptBuilder(tokenizer, 256, "left", vision).build(["go on"], [image])
    response = torch.tensor([[tokenizer.convert_tokens_to_ids("<|im_end|>")] * 4])
    attention = torch.cat([prompts.batch["attention_mask"], torch.ones_like(response)], dim=1)
    sample = DataProto.from_dict({
        "input_ids": torch.cat([prompts.batch["input_ids"], response], dim=1), "attention_mask": attention,
        "position_ids": position_ids_from_mask(attention), "responses": response,
        "response_mask": torch.ones_like(response)}, {"images": [image]})
    actor = DataParallelPPOActor(model, None, torch.device("cpu"), 1, vision=inputs)
    right, _ = actor.compute_log_prob(sample, micro_batch_size=1, temperature=1.0)
    monkeypatch.setattr(actor_module, "mrope_position_ids",
                        lambda m, ids, mask, grid, mm: position_ids_from_mask(mask)[None].expand(4, -1, -1))
    wrong, _ = actor.compute_log_prob(sample, micro_batch_size=1, temperature=1.0)
    assert (right - wrong).abs().max() > 1e-4  # 100x the parity tolerance (measured: 6e-4)
