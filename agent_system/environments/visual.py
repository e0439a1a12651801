"""The visual (AgentOCR) part of an environment manager, shared by ALFWorld and Search-QA.

In visual mode a manager keeps its prompt text (task, skill context, current observation, admissible
actions) and moves the interaction history into an image: each step it hands the history window of
every slot — one flattened line per past step — to :meth:`VisualContext.images`. With
``ocr.agent_select_compression.enable`` the model also writes ``<compression>c</compression>``;
:meth:`VisualContext.read_compression` parses it after each step (two tags make the action invalid),
records ``info["compression_factor"]`` and makes the slot's next image smaller.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from agent_system.environments.prompts.visual import COMPRESSION_INSTRUCTION, FIRST_COMPRESSION_INSTRUCTION
from agent_system.ocr.compression import parse_compression
from agent_system.ocr.visual import OCRSettings, VisualHistory


def flatten(text: str) -> str:
    """One history line: inner newlines and runs of whitespace become single spaces."""
    return " ".join(text.split())


class VisualContext:
    def __init__(self, settings: OCRSettings, num_envs: int):
        self.history = VisualHistory(settings, num_envs)
        self.select_compression = settings.select_compression

    @classmethod
    def from_config(cls, ocr_cfg: Any, env_family: str, num_envs: int) -> "VisualContext":
        return cls(OCRSettings.from_config(ocr_cfg, env_family), num_envs)

    def reset(self) -> None:
        self.history.reset()

    def images(self, windows: list[list[str]]) -> list[np.ndarray]:
        """One history image per slot (an empty window, e.g. a finished episode, gives the blank image)."""
        return self.history.images(windows)

    def read_compression(self, env_idx: int, text: str, info: dict[str, Any]) -> bool:
        """Parse the slot's compression choice for its next image; False when the output has two tags."""
        if not self.select_compression:
            return True
        factor, well_formed = parse_compression(text)
        self.history.factors[env_idx] = factor
        info["compression_factor"] = factor
        return well_formed

    def instruction(self, env_idx: int, first_step: bool) -> str:
        """The compression request appended to the prompt ('' when the agent does not choose)."""
        if not self.select_compression:
            return ""
        if first_step:
            return "\n" + FIRST_COMPRESSION_INSTRUCTION
        return "\n" + COMPRESSION_INSTRUCTION.format(compression_factor=f"{self.history.factors[env_idx]:.2f}")

    def stats(self) -> dict[str, float]:
        return self.history.stats()

    def close(self) -> None:
        self.history.close()
