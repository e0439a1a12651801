"""Visual context (AgentOCR mode): the interaction history rendered as an image for a VLM.

* :mod:`.highlight` — which substrings get which colour (``ocr.highlight_configs`` / ``HIGHLIGHT_CONFIGS``);
* :mod:`.render` — monospace text -> image (greedy word wrap, fixed width, highlight colours);
* :mod:`.cache` — the per-episode segment cache (each history line rendered once);
* :mod:`.compression` — the agent's ``<compression>c</compression>`` choice and the image resize;
* :mod:`.visual` — what an environment manager uses: settings from the ``ocr`` config section and
  :class:`~.visual.VisualHistory` (render + cache + compress + pad, with timing and cache statistics).
"""

from agent_system.ocr.visual import OCRSettings, VisualHistory

__all__ = ["OCRSettings", "VisualHistory"]
