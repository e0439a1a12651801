"""Prompt templates for Search-QA (text mode). Templates only; the manager fills them.

Slots: ``skill_context`` (skill text ending in a blank line, or ''), ``question``, ``max_steps``,
``turn`` (the number of the turn being asked for), ``history`` (rendered ``SEARCH_HISTORY_ENTRY``
lines), ``shown_turns`` / ``past_turns`` (how much of the history is shown) and ``last_turn_note``.
"""

SEARCH_ACTION_INSTRUCTIONS = (
    "You may reason first inside <think> </think>. Then write exactly one action and stop:\n"
    "- <search> query </search> returns the top passages for the query;\n"
    "- <answer> answer </answer> ends the episode. It is graded by exact match, so write only the "
    "answer itself (a name, date, number or yes/no), not a sentence."
)

SEARCH_FIRST_TURN_TEMPLATE = """{skill_context}You are answering a question with the help of a search engine over Wikipedia passages. You have {max_steps} turns.
Question: {question}

{instructions}"""

SEARCH_LATER_TURN_TEMPLATE = """{skill_context}You are answering a question with the help of a search engine over Wikipedia passages. You have {max_steps} turns.
Question: {question}

Your last {shown_turns} of {past_turns} turns and what they returned:
{history}

This is turn {turn} of {max_steps}.{last_turn_note}
{instructions}"""

SEARCH_HISTORY_ENTRY = "[Turn {turn}] {action}\n{observation}"

SEARCH_INVALID_ACTION_LABEL = "(an output with no valid action)"

SEARCH_LAST_TURN_NOTE = " It is your last turn: give your best answer now."

# Visual (AgentOCR) mode: the history is the image placed before this text, one line per past turn
# ("<search> query </search> <information>...</information>"). Same slots as above, without {history}.
SEARCH_VISUAL_FIRST_TURN_TEMPLATE = """{skill_context}You are answering a question with the help of a search engine over Wikipedia passages. You have {max_steps} turns.
Question: {question}

The image above will show your past searches and the passages they returned; it is blank because this is your first turn.

{instructions}"""

SEARCH_VISUAL_LATER_TURN_TEMPLATE = """{skill_context}You are answering a question with the help of a search engine over Wikipedia passages. You have {max_steps} turns.
Question: {question}

The image above shows your last {shown_turns} of {past_turns} turns: each <search> query </search> you made and the <information> </information> it returned.

This is turn {turn} of {max_steps}.{last_turn_note}
{instructions}"""
