"""The trainer config: defaults (``ppo_trainer.yaml``), types (``schema.py``), checks (``validate.py``)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

CONFIG_DIR = Path(__file__).resolve().parent


def compose_config(overrides: list[str], config_name: str = "ppo_trainer") -> DictConfig:
    """The config exactly as ``python -m verl.trainer.main_ppo --config-name <config_name> <overrides>``
    composes it."""
    from hydra import compose, initialize_config_dir

    from verl.trainer.config.schema import register_schema

    register_schema()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        return compose(config_name=config_name, overrides=overrides)
