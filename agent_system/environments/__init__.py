"""Environment managers, built by name from the ``env`` config section."""

from __future__ import annotations

import importlib
from typing import Any

from agent_system.environments.base import EnvironmentManagerBase, distinct_slots

# env.env_name prefix -> module exposing ``make_manager(env_cfg, split, num_envs)`` and optionally
# ``evaluation_tasks(env_cfg, split, slots)``.
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


def ray_workers(env_cfg: Any, num_envs: int) -> tuple[int, float]:
    """(Ray actors, CPUs each) that ``num_envs`` envs of ``env_cfg.env_name`` run on: its manager module's
    ``ray_workers``; (0, 0) when its envs live in the trainer process, as Search-QA's HTTP clients and the
    echo game do."""
    module = importlib.import_module(_MANAGERS[env_family(env_cfg.env_name)])
    return module.ray_workers(env_cfg, num_envs) if hasattr(module, "ray_workers") else (0, 0.0)


def make_env_manager(env_cfg: Any, split: str, num_envs: int, ocr_cfg: Any = None) -> EnvironmentManagerBase:
    """Build the manager for ``split`` ('train' | 'val' | 'test') with ``num_envs`` parallel episodes;
    with ``ocr_cfg.use_ocr`` (the ``ocr`` config section) in visual mode."""
    family = env_family(env_cfg.env_name)
    module = importlib.import_module(_MANAGERS[family])
    if ocr_cfg is not None and ocr_cfg.use_ocr:
        from agent_system.environments.visual import VisualContext

        visual = VisualContext.from_config(ocr_cfg, family, num_envs)
        return module.make_manager(env_cfg, split=split, num_envs=num_envs, visual=visual)
    return module.make_manager(env_cfg, split=split, num_envs=num_envs)


def evaluation_tasks(env_cfg: Any, split: str, slots: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every distinct task of ``split`` ('val' | 'test') once, as reset kwargs (see ``base.py``)."""
    module = importlib.import_module(_MANAGERS[env_family(env_cfg.env_name)])
    listing = getattr(module, "evaluation_tasks", None)
    return listing(env_cfg, split, slots) if listing is not None else distinct_slots(slots)
