"""Echo: a tiny, dependency-free word game for smoke runs and learning tests of the trainer."""
