"""Environment managers, built by name from the ``env`` config section."""

from __future__ import annotations

import importlib
from typing import Any

from agent_system.environments.base import EnvironmentManagerBase

# env.env_name prefix -> module exposing ``make_manager(env_cfg, split, num_envs)``.
_MANAGERS = {
    "alfworld": "agent_system.environments.alfworld_manager",
    "search": "agent_system.environments.search_manager",
    "echo": "agent_system.environments.echo_manager",
    "machines": "agent_system.environments.machines_manager",
}


def env_family(env_name: str) -> str:
    """``alfworld/AlfredTWEnv`` -> ``alfworld``; raises a clear error for unknown names."""
    family = env_name.split("/", 1)[0].lower()
    if family not in _MANAGERS:
        known = ", ".join(sorted(_MANAGERS))
        raise ValueError(f"env.env_name={env_name!r} is not a known environment; use one of: {known}")
    return family


def make_env_manager(env_cfg: Any, split: str, num_envs: int) -> EnvironmentManagerBase:
    """Build the manager for ``split`` ('train' | 'val' | 'test') with ``num_envs`` parallel episodes."""
    module = importlib.import_module(_MANAGERS[env_family(env_cfg.env_name)])
    return module.make_manager(env_cfg, split=split, num_envs=num_envs)
