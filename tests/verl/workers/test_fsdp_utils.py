"""Placement of the optimizer state (fsdp_config.optimizer_offload), checked on CPU."""

from __future__ import annotations

import pytest
import torch

from verl.workers.fsdp_utils import optimizer_state_devices, optimizer_state_on, place_optimizer_state

CPU, GPU = torch.device("cpu"), torch.device("cuda", 0)


def test_where_the_optimizer_state_lives():
    # (device, param_offload, optimizer_offload) -> (during the update, between updates)
    assert optimizer_state_devices(GPU, False, False) == (GPU, GPU)
    assert optimizer_state_devices(GPU, False, True) == (GPU, CPU)  # host memory outside the update
    assert optimizer_state_devices(GPU, True, False) == (CPU, CPU)  # CPUOffloadPolicy steps on the CPU
    assert optimizer_state_devices(GPU, True, True) == (CPU, CPU)
    assert optimizer_state_devices(CPU, False, True) == (CPU, CPU)  # inert on CPU


def adam_with_state() -> torch.optim.AdamW:
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.ones(2, 4)).sum().backward()
    optimizer.step()
    return optimizer


def test_state_is_on_the_step_device_in_the_block_and_moves_to_the_rest_device_after():
    """``meta`` stands in for host memory (data cannot come back from it, so the round trip GPU -> host ->
    GPU is the gpu-marked test's): every moment tensor moves, Adam's scalar step counter stays put."""
    optimizer = adam_with_state()
    with optimizer_state_on(optimizer, step_device=CPU, rest_device=torch.device("meta")):
        assert all(v.device == CPU for state in optimizer.state.values() for v in state.values())
    placed = sorted((k, v.device.type) for state in optimizer.state.values() for k, v in state.items())
    assert placed == [("exp_avg", "meta"), ("exp_avg", "meta"), ("exp_avg_sq", "meta"), ("exp_avg_sq", "meta"),
                      ("step", "cpu"), ("step", "cpu")]


def test_placing_keeps_values_and_shapes():
    optimizer = adam_with_state()
    before = {id(p): {k: v.clone() for k, v in s.items()} for p, s in optimizer.state.items()}
    place_optimizer_state(optimizer, CPU)
    for p, state in optimizer.state.items():
        for k, v in state.items():
            assert torch.equal(v, before[id(p)][k])


@pytest.mark.gpu
def test_offloaded_state_round_trips_between_gpu_and_host():
    model = torch.nn.Linear(4, 3).to(GPU)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.ones(2, 4, device=GPU)).sum().backward()
    optimizer.step()
    step_device, rest_device = optimizer_state_devices(GPU, param_offload=False, optimizer_offload=True)
    place_optimizer_state(optimizer, rest_device)
    moments = [v for s in optimizer.state.values() for k, v in s.items() if k != "step"]
    assert all(v.device == CPU for v in moments)
    with optimizer_state_on(optimizer, step_device, rest_device):
        assert all(v.device.type == "cuda" for s in optimizer.state.values() for k, v in s.items() if k != "step")
        model(torch.ones(2, 4, device=GPU)).sum().backward()
        optimizer.step()  # Adam steps with its moments on the GPU
    assert all(v.device == CPU for s in optimizer.state.values() for k, v in s.items() if k != "step")
