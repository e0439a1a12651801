"""LoRA keys, start-up errors, and the merged weight stream (single process, no Ray)."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from transformers import AutoModelForCausalLM

from tests.conftest import echo_overrides, trainer_config
from verl.trainer.config.validate import ConfigError, validate_config
from verl.trainer.main_ppo import Run
from verl.utils import lora


def model_cfg(**kw):
    base = dict(lora_rank=4, lora_alpha=8, target_modules="all-linear", exclude_modules=None)
    return OmegaConf.create(base | kw)


@pytest.mark.parametrize(("overrides", "message"), [
    (["actor_rollout_ref.model.lora_rank=-1"], "actor_rollout_ref.model.lora_rank=-1: must be >= 0"),
    (["actor_rollout_ref.model.lora_rank=8", "actor_rollout_ref.model.lora_alpha=0"],
     "actor_rollout_ref.model.lora_alpha=0.0: must be > 0"),
    (["actor_rollout_ref.model.lora_rank=8", "actor_rollout_ref.model.target_modules=[]"],
     "actor_rollout_ref.model.target_modules=\\[\\]: use all-linear"),
    (["actor_rollout_ref.model.lora_rank=8", "algorithm.adv_estimator=gae"],
     "actor_rollout_ref.model.lora_rank=8: LoRA trains the actor only.*gae"),
])
def test_bad_lora_keys_stop_the_config_check_naming_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(trainer_config(overrides))


def test_lora_off_and_on_are_valid_configs():
    validate_config(trainer_config(["algorithm.adv_estimator=gae"]))  # lora_rank=0 (default) with the critic
    validate_config(trainer_config(["actor_rollout_ref.model.lora_rank=16", "actor_rollout_ref.model.target_modules=[q_proj,v_proj]"]))


@pytest.mark.parametrize(("targets", "message"), [
    ("[nothing_like_this]", "target_modules=\\['nothing_like_this'\\].*peft cannot add LoRA adapters to Qwen2ForCausalLM"),
    ("[embed_tokens]", "target_modules=\\['embed_tokens'\\] selects Embedding layers"),
    ("[q_proj,lm_head]", "selects lm_head, whose weight is tied to another parameter"),
])
def test_targets_the_model_cannot_take_stop_the_run_at_start_up(tiny_model_dir, echo_slots, tmp_path, targets, message):
    cfg = trainer_config(echo_overrides(tiny_model_dir, echo_slots, tmp_path, actor_rollout_ref__model__lora_rank=4,
                                        actor_rollout_ref__model__target_modules=targets))
    with pytest.raises(ValueError, match=message):
        Run(cfg)  # before Ray or any worker starts
    assert not (tmp_path / "metrics.jsonl").exists()


def test_exclude_modules_can_leave_nothing_to_train(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with pytest.raises(ValueError, match="exclude_modules"):
        lora.wrap(model, model_cfg(target_modules=["q_proj"], exclude_modules=["q_proj"]))


def test_merged_stream_is_peft_merge_under_the_base_names(tiny_model_dir):
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    wrapped = lora.wrap(AutoModelForCausalLM.from_pretrained(tiny_model_dir), model_cfg(target_modules=["q_proj", "up_proj"]))
    with torch.no_grad():
        for name, p in wrapped.named_parameters():
            if ".lora_B." in name:
                p.normal_()
    stream = dict(lora.merged_stream(wrapped, lambda p, dtype: p.detach().to(dtype), torch.bfloat16))
    assert list(stream) == [n for n, _ in base.named_parameters()]  # base names, tied ones once, no adapters
    merged = wrapped.merge_and_unload().state_dict()
    changed = 0
    for name, tensor in stream.items():
        assert tensor.dtype == torch.bfloat16
        torch.testing.assert_close(tensor, merged[name].to(torch.bfloat16), atol=0, rtol=0)
        changed += not torch.equal(tensor, base.state_dict()[name].to(torch.bfloat16))
    assert changed == 2 * base.config.num_hidden_layers  # q_proj and up_proj of every layer


def test_resume_with_other_lora_settings_is_refused(tiny_model_dir, tmp_path):
    wrapped = lora.wrap(AutoModelForCausalLM.from_pretrained(tiny_model_dir), model_cfg())
    wrapped.peft_config[lora.ADAPTER].save_pretrained(tmp_path / lora.SUBDIR)
    lora.check_checkpoint(tmp_path, model_cfg())
    with pytest.raises(ValueError, match="holds LoRA adapters with r=4, this run asks for 8"):
        lora.check_checkpoint(tmp_path, model_cfg(lora_rank=8))
    with pytest.raises(ValueError, match="written with LoRA but actor_rollout_ref.model.lora_rank turns it off"):
        lora.check_checkpoint(tmp_path, model_cfg(lora_rank=0))
    with pytest.raises(ValueError, match="written without LoRA"):
        lora.check_checkpoint(tmp_path / "other", model_cfg())
