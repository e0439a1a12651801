"""Echo game rules: repeat a target word; reward = character similarity, won on an exact repeat.

The reward is dense (``difflib`` ratio 2*M/T between the attempt and the word, in [0, 1]) so that even a
randomly initialised model receives a learning signal: it is the smallest honest environment on which
GRPO visibly improves a tiny model within minutes. An episode ends when the word is repeated exactly or
after ``max_steps`` attempts; the episode reward is the sum of the per-attempt similarities.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field


@dataclass
class EchoGame:
    word: str
    max_steps: int
    attempts: list[str] = field(default_factory=list)
    won: bool = False

    @property
    def done(self) -> bool:
        return self.won or len(self.attempts) >= self.max_steps

    def step(self, attempt: str) -> float:
        if self.done:
            raise RuntimeError("the echo episode is over; reset before stepping again")
        self.attempts.append(attempt)
        self.won = attempt == self.word
        return difflib.SequenceMatcher(None, attempt, self.word).ratio()
