"""Task categories each environment reports: the only environment fact the skill module may use.

A skill mapping's ``task_to_skill`` keys must come from these lists (checked by the skill linter).
"""

ALFWORLD_TASK_TYPES: tuple[str, ...] = (
    "pick_and_place",
    "pick_two_obj_and_place",
    "look_at_obj_in_light",
    "pick_heat_then_place_in_recep",
    "pick_cool_then_place_in_recep",
    "pick_clean_then_place_in_recep",
)

SEARCH_SKILL_TYPES: tuple[str, ...] = (
    "direct_retrieval",
    "entity_attribute_lookup",
    "compare",
    "multi_hop_reasoning",
)

ECHO_CATEGORIES: tuple[str, ...] = ("echo",)

MACHINE_TYPES: tuple[str, ...] = ("pump", "lift", "oven", "mixer")

TASK_CATEGORIES: dict[str, tuple[str, ...]] = {
    "alfworld": ALFWORLD_TASK_TYPES,
    "search": SEARCH_SKILL_TYPES,
    "echo": ECHO_CATEGORIES,
    "machines": MACHINE_TYPES,
}
