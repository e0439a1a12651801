"""Model output text -> ALFWorld command plus a validity flag (pure functions, never raise).

Rules (SPEC §3; tags are matched case-insensitively):

* **valid** when the text holds exactly one ``<think>`` … ``</think>`` block and exactly one
  ``<action>`` … ``</action>`` block (each opening tag before its closing tag, the two blocks not
  nested in each other), the action is not empty, and the text has no CJK characters (Han
  ideographs, kana, Hangul; the reference rejects Chinese to stop language mixing);
* the **action** is the text between the first ``<action>`` and the first ``</action>`` after it,
  stripped and lower-cased; an output with a repeated ``<action>`` or ``</action>`` tag has no action
  at all (which of its commands was meant is unknowable);
* an **invalid** output still takes its step: with the extracted action when one is there (as the
  reference does), else with the empty command, which changes nothing in the game (it answers
  "Nothing happens."), as the reference sends an empty action. The step is used up and the sample
  is flagged ``is_action_valid = False`` (the trainer's invalid-action penalty applies).

Whether the action is admissible does not affect validity: an inadmissible command is a legal move
that changes nothing, and learning to avoid it is the policy's job.
"""

from __future__ import annotations

import re

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ACTION_OPEN, ACTION_CLOSE = "<action>", "</action>"

# Han ideographs (+ extension A, compatibility block), Hiragana/Katakana, Hangul syllables.
_CJK = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af]")


def _single_block(text: str, open_tag: str, close_tag: str) -> tuple[int, int] | None:
    """(start, end) of the only ``open_tag … close_tag`` block in ``text``, or None."""
    if text.count(open_tag) != 1 or text.count(close_tag) != 1:
        return None
    start, end = text.find(open_tag), text.find(close_tag)
    return (start, end + len(close_tag)) if start < end else None


def _extract_action(lowered: str) -> str:
    if lowered.count(ACTION_OPEN) > 1 or lowered.count(ACTION_CLOSE) > 1:
        return ""
    start = lowered.find(ACTION_OPEN)
    if start == -1:
        return ""
    end = lowered.find(ACTION_CLOSE, start)
    return lowered[start + len(ACTION_OPEN) : end].strip() if end != -1 else ""


def project_action(text: str) -> tuple[str, bool]:
    """One model output -> (command to send to the game, whether the output is valid)."""
    lowered = text.lower()
    action = _extract_action(lowered)
    think = _single_block(lowered, THINK_OPEN, THINK_CLOSE)
    act = _single_block(lowered, ACTION_OPEN, ACTION_CLOSE)
    valid = (
        think is not None
        and act is not None
        and (think[1] <= act[0] or act[1] <= think[0])  # neither block inside the other
        and action != ""
        and _CJK.search(text) is None
    )
    return action, valid


def alfworld_projection(texts: list[str]) -> tuple[list[str], list[bool]]:
    """Batch form of :func:`project_action`: (actions, valids), one entry per text."""
    pairs = [project_action(text) for text in texts]
    return [action for action, _ in pairs], [valid for _, valid in pairs]
