"""Prompt templates for ALFWorld (SPEC §3). Templates only; the manager fills them in.

Slots: ``{task}`` the goal sentence; ``{skill_context}`` the skill text followed by a blank line,
or '' for none; ``{history}`` the last ``env.history_length`` :data:`ALFWORLD_HISTORY_ENTRY` lines;
``{steps_taken}`` / ``{history_count}`` / ``{current_step}`` counters; ``{observation}`` the current
raw game text; ``{admissible_actions}`` the quoted, comma-separated admissible commands.
"""

ALFWORLD_INSTRUCTION = (
    "First think step by step about the situation inside <think> </think> tags. "
    "Then pick exactly one admissible action for this step and write it inside <action> </action> tags."
)

ALFWORLD_FIRST_STEP_TEMPLATE = """You are an expert household agent in the ALFRED text world. Your task is to: {task}

{skill_context}This is step {current_step}. What you observe now:
{observation}

Admissible actions: [{admissible_actions}]

""" + ALFWORLD_INSTRUCTION

ALFWORLD_LATER_STEP_TEMPLATE = """You are an expert household agent in the ALFRED text world. Your task is to: {task}

{skill_context}You have taken {steps_taken} step(s) so far. Your last {history_count} observation(s) and action(s):
{history}

This is step {current_step}. What you observe now:
{observation}

Admissible actions: [{admissible_actions}]

""" + ALFWORLD_INSTRUCTION

ALFWORLD_HISTORY_ENTRY = "[Observation]: {observation} [Action]: {action}"

# Visual (AgentOCR) mode: the history is the image placed before this text, one line per past step
# (ALFWORLD_HISTORY_ENTRY). Same slots as above, without {history}.
ALFWORLD_VISUAL_FIRST_STEP_TEMPLATE = """You are an expert household agent in the ALFRED text world. Your task is to: {task}

{skill_context}The image above will show your most recent observations and the actions you took; it is blank because this is your first step.

This is step {current_step}. What you observe now:
{observation}

Admissible actions: [{admissible_actions}]

""" + ALFWORLD_INSTRUCTION

ALFWORLD_VISUAL_LATER_STEP_TEMPLATE = """You are an expert household agent in the ALFRED text world. Your task is to: {task}

{skill_context}You have taken {steps_taken} step(s) so far. The image above shows your last {history_count} observation(s) and the action you took after each.

This is step {current_step}. What you observe now:
{observation}

Admissible actions: [{admissible_actions}]

""" + ALFWORLD_INSTRUCTION
