"""Prompt template of the machines environment. Template only; the manager fills it in.

Slots: ``{skill_context}`` the skill text followed by a blank line, or '' for none; ``{adjective}``,
``{machine}``, ``{room}`` the task; ``{pressed}`` the lit buttons in press order (the last
``env.history_length`` of them, older ones as '...'), or 'none'; ``{buttons}`` the admissible (unlit)
buttons in display order, each in brackets.

Kept short on purpose (about 60 tokens without skills): every token is paid at every step on a CPU.
"""

MACHINES_TEMPLATE = (
    "{skill_context}Task: start the {adjective} {machine} in the {room}.\n"
    "Pressed so far: {pressed}.\n"
    "Buttons you can press: {buttons}.\n"
    "Which button do you press next? Answer with one color."
)

MACHINES_NOTHING_PRESSED = "none"
MACHINES_OLDER_PRESSES = "..."
