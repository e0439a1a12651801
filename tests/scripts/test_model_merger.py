"""scripts/model_merger.py on a checkpoint whose model code ships in its folder (``auto_map``)."""

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.distributed.checkpoint as dcp
from transformers import AutoModelForCausalLM

REPO_ROOT = Path(__file__).resolve().parents[2]

CONFIG_CODE = """from transformers import Qwen2Config


class RemoteConfig(Qwen2Config):
    model_type = "skillzero_remote"
"""

MODELING_CODE = """from transformers import Qwen2ForCausalLM

from .configuration_remote import RemoteConfig


class RemoteForCausalLM(Qwen2ForCausalLM):
    config_class = RemoteConfig
"""


@pytest.fixture(scope="module")
def remote_checkpoint(tiny_model_dir, tmp_path_factory) -> Path:
    """An actor checkpoint folder as the trainer writes it, for a model class defined by files in the folder."""
    actor = tmp_path_factory.mktemp("remote") / "actor"
    hf_dir = actor / "huggingface"
    shutil.copytree(tiny_model_dir, hf_dir, ignore=shutil.ignore_patterns("*.safetensors"))
    (hf_dir / "configuration_remote.py").write_text(CONFIG_CODE)
    (hf_dir / "modeling_remote.py").write_text(MODELING_CODE)
    config = json.loads((hf_dir / "config.json").read_text())
    config.update(model_type="skillzero_remote", architectures=["RemoteForCausalLM"],
                  auto_map={"AutoConfig": "configuration_remote.RemoteConfig",
                            "AutoModelForCausalLM": "modeling_remote.RemoteForCausalLM"})
    (hf_dir / "config.json").write_text(json.dumps(config))
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    dcp.save({"model": model.state_dict()}, checkpoint_id=str(actor / "dcp"), no_dist=True)
    return actor


def run_merger(actor: Path, out: Path, *extra: str) -> None:
    spec = importlib.util.spec_from_file_location("model_merger", REPO_ROOT / "scripts/model_merger.py")
    merger = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(merger)
    merger.main(["merge", "--backend", "fsdp", "--local_dir", str(actor), "--target_dir", str(out), *extra])


def test_remote_code_checkpoint_needs_the_flag(remote_checkpoint, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_merger(remote_checkpoint, tmp_path / "out")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "auto_map" in err and "--trust_remote_code" in err
    assert not (tmp_path / "out").exists()


def test_remote_code_checkpoint_merges_with_the_flag(remote_checkpoint, tiny_model_dir, tmp_path):
    run_merger(remote_checkpoint, tmp_path / "out", "--trust_remote_code")
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "out", trust_remote_code=True)
    assert type(merged).__name__ == "RemoteForCausalLM"
    original = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    for name, tensor in merged.state_dict().items():
        assert torch.equal(tensor, original[name]), name
