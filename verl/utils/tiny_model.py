"""Tiny, random-initialised chat models built offline, for tests and the CPU quickstart.

    python -m verl.utils.tiny_model DIR [--vocab_size 1024] [--hidden_size 64] [--num_layers 2]
                                        [--num_heads 2] [--num_kv_heads 1] [--seed 0] [--vision]

writes an ordinary Hugging Face folder: a byte-level BPE tokenizer trained here on bundled text (the
repository's skill files and prompt templates, if present, plus a built-in English sample) with the ChatML
special tokens and chat template, and a ``Qwen2ForCausalLM`` — or, with ``--vision``, a
``Qwen2_5_VLForConditionalGeneration`` plus its processor — with random weights in float32. The folder
loads through the same ``from_pretrained`` calls as a real Qwen2.5 model (see :mod:`verl.utils.model`).
Building is deterministic: the same knobs and bundled text give the same tokenizer and weights.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import (
    GenerationConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2Config,
    Qwen2ForCausalLM,
)
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX as QWEN2_PRETOKENIZE_REGEX
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from verl.utils.model import build_dir_atomically

# The text a SkillZero agent actually reads: skill files and prompt templates. Kept narrow so that the
# tokenizer does not change with every code edit.
STAMP_FILE = "skillzero_tiny_model.json"
MIN_HEAD_DIM = 32
MAX_POSITION_EMBEDDINGS = 32768  # as Qwen2.5; rotary embeddings cost nothing to extend
ROPE_THETA = 1_000_000.0  # as Qwen2.5

PAD, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD = (
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# ChatML as Qwen2.5 writes it, without a default system message. Message content may be a string or, for
# the vision model, a list of {"type": "text", "text": ...} / {"type": "image"} parts.
CHATML_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif part['type'] == 'text' -%}{{- part['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)

# The tokenizer's whole training text: fixed, so a tiny model (and every test number that depends on it)
# stays the same whatever else changes in the repository, and an installed package builds the same model.
ENGLISH_SAMPLE = """\
You are in the middle of a room. Looking quickly around you, you see a cabinet 1, a countertop 2, a
drawer 3, a fridge 1, a microwave 1, a sinkbasin 1, a stoveburner 4, a shelf 2 and a garbagecan 1.
Your task is to: put a clean mug in the coffeemachine. First find the mug, then wash it in the sink.
go to countertop 2. take mug 1 from countertop 2. clean mug 1 with sinkbasin 1. heat egg 2 with
microwave 1. cool apple 1 with fridge 1. open drawer 3. close drawer 3. examine book 1 under desklamp 1.
use desklamp 1. look. inventory. move mug 1 to coffeemachine 1. You won! The task is complete.
Nothing happens. On the shelf 2, you see a vase 1, a keychain 3 and a pencil 2.
<think>The mug must be clean before it goes into the coffee machine, so I should wash it first.</think>
<action>clean mug 1 with sinkbasin 1</action>
Question: Which river flows through the capital of Austria, and when was its largest bridge built?
<search> river through Vienna </search>
<information>Doc 1: "Danube" The Danube is the second-longest river in Europe and flows through Vienna.
Doc 2: "Vienna" Vienna is the capital and largest city of Austria.</information>
<answer> the Danube </answer>
People often compare two things: which one is older, larger, or more popular, and why it matters.
The quick brown fox jumps over the lazy dog while the children read, write and count from 1 to 100.
Numbers such as 3.14, 2026, 10%, $25 and 7:30 pm appear in questions about history, science and sport.
Words from other languages also appear: café, naïve, Zürich, São Paulo, Straße, Москва, 東京, 서울.
"""


@dataclass(frozen=True)
class TinyModelConfig:
    """Knobs of a tiny model. ``head_dim = hidden_size // num_heads`` must be at least 32."""

    vocab_size: int = 1024
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 2
    num_kv_heads: int = 1
    seed: int = 0
    vision: bool = False

    def __post_init__(self) -> None:
        problems = []
        if min(self.hidden_size, self.num_layers, self.num_heads, self.num_kv_heads) < 1:
            problems.append("hidden_size, num_layers, num_heads and num_kv_heads must be positive")
        elif self.hidden_size % self.num_heads:
            problems.append(f"hidden_size {self.hidden_size} must be divisible by num_heads {self.num_heads}")
        elif self.head_dim < MIN_HEAD_DIM or self.head_dim % 2:
            problems.append(
                f"head_dim = hidden_size // num_heads = {self.head_dim} must be even and >= {MIN_HEAD_DIM} "
                f"(raise hidden_size or lower num_heads)"
            )
        elif self.num_heads % self.num_kv_heads:
            problems.append(
                f"num_heads {self.num_heads} must be divisible by num_kv_heads {self.num_kv_heads}"
            )
        min_vocab = 256 + len(self.special_tokens)
        if self.vocab_size < min_vocab:
            problems.append(f"vocab_size must be >= {min_vocab} (256 byte tokens + the special tokens)")
        if problems:
            raise ValueError("Invalid tiny model knobs: " + "; ".join(problems) + ".")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def special_tokens(self) -> tuple[str, ...]:
        """Special tokens in id order: pad = 0, ``<|im_start|>`` = 1, EOS ``<|im_end|>`` = 2, then vision."""
        base = (PAD, IM_START, IM_END)
        return base + (VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD) if self.vision else base


def build_tiny_model(out_dir: str | Path, **knobs: int | bool) -> Path:
    """Build a tiny model into ``out_dir`` (atomically) and return the folder.

    ``knobs`` are the fields of :class:`TinyModelConfig`. If ``out_dir`` already holds a model built from
    the same knobs and the same bundled text, it is returned untouched.
    """
    valid = {field.name for field in dataclasses.fields(TinyModelConfig)}
    unknown = sorted(set(knobs) - valid)
    if unknown:
        raise TypeError(f"Unknown tiny model knob(s) {unknown}; valid knobs are {sorted(valid)}.")
    config = TinyModelConfig(**knobs)
    corpus = _corpus_texts()
    stamp = {"knobs": dataclasses.asdict(config), "corpus_sha256": _digest(corpus)}
    target = Path(out_dir).expanduser()
    foreign = target.exists() and (not target.is_dir() or any(target.iterdir()))
    if foreign and _read_stamp(target) is None:
        raise FileExistsError(
            f"{target} exists, is not empty and was not built by verl.utils.tiny_model; refusing to "
            f"overwrite it. "
            f"Fix: choose a new or empty folder."
        )

    def build(tmp_dir: Path) -> None:
        _write_model(config, corpus, tmp_dir)
        (tmp_dir / STAMP_FILE).write_text(json.dumps(stamp, indent=2, sort_keys=True) + "\n")

    return build_dir_atomically(target, build, is_complete=lambda folder: _read_stamp(folder) == stamp)


def _read_stamp(folder: Path) -> dict | None:
    try:
        return json.loads((folder / STAMP_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _corpus_texts() -> list[str]:
    """The bundled training text (see ``ENGLISH_SAMPLE``)."""
    return [ENGLISH_SAMPLE]


def _digest(texts: list[str]) -> str:
    hasher = hashlib.sha256()
    for text in texts:
        hasher.update(hashlib.sha256(text.encode()).digest())
    return hasher.hexdigest()


def _write_model(config: TinyModelConfig, corpus: list[str], out_dir: Path) -> None:
    tokenizer = train_tokenizer(config, corpus)
    model = _init_model(config, tokenizer)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    if config.vision:
        Qwen2VLImageProcessorPil().save_pretrained(out_dir)


def train_tokenizer(config: TinyModelConfig, corpus: list[str]) -> PreTrainedTokenizerFast:
    """Byte-level BPE (every string encodes, non-ASCII included) with ChatML special tokens and template.

    The normaliser and pre-tokeniser are Qwen2's (NFC, Qwen's split regex, byte level): ``AutoTokenizer``
    rebuilds a ``qwen2`` model's tokenizer with exactly this pipeline, so training must use it too.
    """
    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=config.vocab_size,
        special_tokens=list(config.special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token=IM_END,
        pad_token=PAD,
        chat_template=CHATML_TEMPLATE,
        model_max_length=MAX_POSITION_EMBEDDINGS,
    )


def _init_model(config: TinyModelConfig, tokenizer: PreTrainedTokenizerFast) -> PreTrainedModel:
    """Random float32 weights drawn from ``config.seed`` without disturbing the caller's RNG."""
    special = {token: tokenizer.convert_tokens_to_ids(token) for token in config.special_tokens}
    text = dict(
        vocab_size=config.vocab_size,
        hidden_size=config.hidden_size,
        intermediate_size=4 * config.hidden_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_kv_heads,
        max_position_embeddings=MAX_POSITION_EMBEDDINGS,
        rope_parameters={"rope_type": "default", "rope_theta": ROPE_THETA},
        tie_word_embeddings=True,
        bos_token_id=None,  # ChatML has no BOS; Qwen2.5-VL's config default would point past our vocabulary
        eos_token_id=special[IM_END],
        pad_token_id=special[PAD],
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        if config.vision:
            model = Qwen2_5_VLForConditionalGeneration(_vision_config(config, text, special))
        else:
            model = Qwen2ForCausalLM(Qwen2Config(**text, dtype=torch.float32))
    model.generation_config = GenerationConfig(eos_token_id=[special[IM_END]], pad_token_id=special[PAD])
    return model.to(torch.float32)


def _vision_config(config: TinyModelConfig, text: dict, special: dict[str, int]) -> Qwen2_5_VLConfig:
    """Qwen2.5-VL layout (14-px patches, 2x2 merge) with a one-block vision tower of the text width."""
    half = config.head_dim // 2  # multimodal RoPE splits the rotary half-dimension into (t, h, w)
    temporal = half // 4
    height = (half - temporal) // 2
    width = half - temporal - height
    rope = {**text["rope_parameters"], "mrope_section": [temporal, height, width]}
    return Qwen2_5_VLConfig(
        text_config={**text, "rope_parameters": rope},
        vision_config={
            "depth": 1,
            "hidden_size": config.hidden_size,
            "intermediate_size": 2 * config.hidden_size,
            "num_heads": config.num_heads,
            "out_hidden_size": config.hidden_size,
            "fullatt_block_indexes": [0],
        },
        image_token_id=special[IMAGE_PAD],
        video_token_id=special[VIDEO_PAD],
        vision_start_token_id=special[VISION_START],
        vision_end_token_id=special[VISION_END],
        tie_word_embeddings=True,
        dtype=torch.float32,
    )


def main(argv: list[str] | None = None) -> None:
    defaults = TinyModelConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path, help="folder to write (created; rebuilt if its knobs differ)")
    for field in dataclasses.fields(TinyModelConfig):
        if field.type in (bool, "bool"):
            parser.add_argument(f"--{field.name}", action="store_true", help="build the Qwen2.5-VL variant")
        else:
            default = getattr(defaults, field.name)
            parser.add_argument(f"--{field.name}", type=int, default=default, help=f"default {default}")
    args = vars(parser.parse_args(argv))
    out_dir = args.pop("out_dir")
    try:
        print(build_tiny_model(out_dir, **args))
    except (ValueError, FileExistsError) as error:
        parser.error(str(error))


if __name__ == "__main__":
    main()
