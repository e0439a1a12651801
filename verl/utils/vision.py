"""Qwen2.5-VL inputs for the visual mode: images -> pixels, prompt expansion, multimodal RoPE ids, checks.

A prompt with an image carries, in the chat template's output, one ``<|vision_start|><|image_pad|>
<|vision_end|>`` marker. Before tokenising, the single ``<|image_pad|>`` becomes
``prod(image_grid_thw) / merge_size**2`` copies (one per merged 2x2 patch the vision tower emits);
the model replaces exactly those positions by the image features.

* The image processor is the **PIL backend** of the Qwen2-VL processor
  (``Qwen2VLImageProcessorPil``): ``AutoProcessor`` would build the video processor, which needs
  torchvision (whose wheel breaks transformers beside our torch). ``min_pixels`` / ``max_pixels`` are
  pinned (:data:`MIN_PIXELS`, :data:`MAX_PIXELS`, the values Qwen2.5-VL-3B/7B ship) so the driver's
  token count, the rollout engine and the trainer resize every image identically.
* Samples carry their image as a ``uint8`` array in ``non_tensor_batch["images"]``; ``pixel_values``
  and ``image_grid_thw`` are computed from it per micro-batch where the model runs (rollout, log-probs,
  update). This is a pure function of the image, and the array is ~8x smaller than its float32
  ``pixel_values`` (which repeat every patch for the 2-frame temporal patch).
* Position ids are Qwen2-VL's multimodal RoPE ids, 4 rows (text positions, then temporal / height /
  width), from the model's own ``get_rope_index`` — the function ``generate`` uses — so the log-probs
  recomputed in training match the sampled ones (tested).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil, smart_resize

from verl.utils.model import is_vision_model

MIN_PIXELS = 4 * 28 * 28  # 3,136: Qwen2.5-VL's preprocessor_config.json
MAX_PIXELS = 16384 * 28 * 28  # 12,845,056: Qwen2.5-VL's preprocessor_config.json
VISION_START, IMAGE_PAD, VISION_END = "<|vision_start|>", "<|image_pad|>", "<|vision_end|>"
IMAGE_MARKER = VISION_START + IMAGE_PAD + VISION_END
PROMPT_LENGTH_KEY = "data.max_prompt_length"


def require_vision_model(model_dir: str) -> None:
    """Stop with the fix when ``ocr.use_ocr=True`` meets a text-only model."""
    if not is_vision_model(model_dir):
        raise ValueError(
            f"ocr.use_ocr=True renders the history as an image, but actor_rollout_ref.model.path={model_dir!r} is "
            "a text-only model. Fix: use a Qwen2.5-VL model (e.g. Qwen/Qwen2.5-VL-3B-Instruct, or "
            "`python -m verl.utils.tiny_model DIR --vision` for a tiny one), or set ocr.use_ocr=False.")


def load_image_processor(model_dir: str) -> Qwen2VLImageProcessorPil:
    """The model's Qwen2-VL image processor (PIL backend) with the pinned pixel bounds."""
    if not (Path(model_dir) / "preprocessor_config.json").is_file():
        raise ValueError(f"{model_dir} has no preprocessor_config.json (the image processor settings of a "
                         "Qwen2.5-VL model); download the full model folder")
    return Qwen2VLImageProcessorPil.from_pretrained(
        model_dir, size={"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS})


@dataclass(frozen=True)
class VisionPrompt:
    """Token-side facts of a vision model: what the driver needs to expand image markers."""

    image_pad_id: int
    vision_start_id: int
    vision_end_id: int
    patch_size: int
    merge_size: int
    min_pixels: int = MIN_PIXELS
    max_pixels: int = MAX_PIXELS

    @classmethod
    def from_pretrained(cls, tokenizer: Any, model_dir: str) -> "VisionPrompt":
        processor = load_image_processor(model_dir)
        ids = {token: tokenizer.convert_tokens_to_ids(token) for token in (VISION_START, IMAGE_PAD, VISION_END)}
        if any(i is None or i == tokenizer.unk_token_id for i in ids.values()):
            raise ValueError(f"the tokenizer of {model_dir} lacks the vision tokens {list(ids)}; use the model's "
                             "own Qwen2.5-VL tokenizer")
        return cls(ids[IMAGE_PAD], ids[VISION_START], ids[VISION_END], processor.patch_size, processor.merge_size,
                   processor.size["shortest_edge"], processor.size["longest_edge"])

    def grid(self, height: int, width: int) -> tuple[int, int, int]:
        """``image_grid_thw`` of an image of this size, as the processor will resize it."""
        h, w = smart_resize(height, width, factor=self.patch_size * self.merge_size,
                            min_pixels=self.min_pixels, max_pixels=self.max_pixels)
        return 1, h // self.patch_size, w // self.patch_size

    def image_tokens(self, image: np.ndarray) -> int:
        """Number of ``<|image_pad|>`` tokens for ``image`` (height, width, 3): prod(grid) / merge**2."""
        t, h, w = self.grid(*image.shape[:2])
        return t * h * w // self.merge_size ** 2

    def expand(self, ids_before: list[int], ids_after: list[int], image: np.ndarray) -> tuple[list[int], int]:
        """Prompt ids around one image marker -> (full ids, index of ``<|vision_start|>``)."""
        span = [self.vision_start_id, *[self.image_pad_id] * self.image_tokens(image), self.vision_end_id]
        return ids_before + span + ids_after, len(ids_before)

    def truncate(self, ids: list[int], vision_start: int, limit: int, side: str) -> list[int]:
        """Cut ``ids`` to ``limit`` tokens from ``side`` (left | right), never inside the vision span."""
        if len(ids) <= limit:
            return ids
        vision_end = vision_start + ids[vision_start:].index(self.vision_end_id) + 1
        cut_inside = vision_start < len(ids) - limit if side == "left" else vision_end > limit
        if cut_inside:
            raise ValueError(
                f"a step prompt has {len(ids)} tokens ({vision_end - vision_start} of them the history image) > "
                f"{PROMPT_LENGTH_KEY}={limit}, and cutting it would cut the image; raise {PROMPT_LENGTH_KEY}, "
                "lower ocr.max_height / ocr.max_width / env.history_length, or compress the image")
        return ids[-limit:] if side == "left" else ids[:limit]


class VisionInputs:
    """Model-side inputs of a micro-batch with one image per row (rollout engine and actor)."""

    def __init__(self, model_dir: str, tokenizer: Any):
        self.processor = load_image_processor(model_dir)
        self.image_pad_id = tokenizer.convert_tokens_to_ids(IMAGE_PAD)
        self.merge_size = self.processor.merge_size

    def pixel_inputs(self, images: Sequence[np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
        """``pixel_values`` (all patches of all images, concatenated in row order) and ``image_grid_thw``."""
        out = self.processor(images=[np.asarray(im, dtype=np.uint8) for im in images], return_tensors="pt")
        return {"pixel_values": out["pixel_values"].to(device), "image_grid_thw": out["image_grid_thw"].to(device)}

    def check_image_tokens(self, input_ids: torch.Tensor, image_grid_thw: torch.Tensor) -> None:
        """Each row must hold exactly prod(grid) / merge**2 image tokens for its image."""
        have = (input_ids == self.image_pad_id).sum(-1).tolist()
        want = (image_grid_thw.prod(-1) // self.merge_size ** 2).tolist()
        if have != want:
            raise ValueError(f"image tokens per row {have} disagree with image_grid_thw, which needs {want}: the "
                             "prompt was expanded for a different image size or processor setting")

    def model_inputs(self, images: Sequence[np.ndarray], input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """Keyword inputs for ``generate`` / ``forward`` besides ids and mask, checked against the ids."""
        pixels = self.pixel_inputs(images, input_ids.device)
        self.check_image_tokens(input_ids, pixels["image_grid_thw"])
        return {**pixels, "mm_token_type_ids": (input_ids == self.image_pad_id).int()}


def multimodal_inputs(vision: VisionInputs | None, images: Sequence[np.ndarray] | None,
                      input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """A micro-batch's image inputs ({} without images); images without a vision model, or image tokens
    without images, are errors rather than a silently different model input."""
    if images is None:
        if vision is not None and bool((input_ids == vision.image_pad_id).any()):
            raise ValueError("the batch has image tokens but no images (non_tensor_batch['images'] is missing)")
        return {}
    if vision is None:
        raise ValueError("the batch carries images but the policy is not a vision model")
    return vision.model_inputs(images, input_ids)


def mrope_position_ids(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       image_grid_thw: torch.Tensor, mm_token_type_ids: torch.Tensor) -> torch.Tensor:
    """(4, B, L) position ids: text positions (pads 0) then the model's temporal/height/width RoPE ids."""
    core = model.model if hasattr(model, "model") and hasattr(model.model, "get_rope_index") else model
    if not hasattr(core, "get_rope_index"):
        raise TypeError(f"{type(model).__name__} has no get_rope_index; the visual mode needs Qwen2(.5)-VL")
    rope, _ = core.get_rope_index(input_ids, mm_token_type_ids=mm_token_type_ids, image_grid_thw=image_grid_thw,
                                  attention_mask=attention_mask)
    text = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)
    return torch.cat([text[None], rope.to(text.device)])
