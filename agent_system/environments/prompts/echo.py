"""Prompt template of the echo game."""

ECHO_TEMPLATE = (
    "{skill_context}Repeat the word exactly, nothing else.\n"
    "Word: {word}\n"
    "{history}"
    "Your answer:"
)
ECHO_HISTORY_ENTRY = "Attempt {n}: {attempt} (similarity {score:.2f})\n"
