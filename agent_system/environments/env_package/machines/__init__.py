"""Machines: a small skill-dependent environment (start a machine by pressing its buttons in a fixed,
arbitrary order that only its skill file states). See docs/internalization.md."""
