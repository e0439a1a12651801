"""Prompt text shared by every environment's visual (AgentOCR) templates. Templates only.

The history image itself goes first in the user message (before the text); the environment templates
(``*_VISUAL_*`` in ``alfworld.py`` / ``search.py``) refer to it as "the image above".
"""

_COMPRESSION_RULES = (
    "Also choose how strongly to compress the next history image: a factor from 1 to 5. Each side of the "
    "image shrinks by the square root of the factor, so a larger factor costs fewer tokens but is harder to "
    "read; pick the largest one that still keeps what you need legible. Write it inside "
    "<compression> </compression>, e.g. <compression>1.5</compression>."
)

FIRST_COMPRESSION_INSTRUCTION = _COMPRESSION_RULES

COMPRESSION_INSTRUCTION = _COMPRESSION_RULES + " (The image above was compressed with factor {compression_factor}.)"
