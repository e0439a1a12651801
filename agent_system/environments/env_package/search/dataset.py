"""Search-QA task slots: QA records -> parquet rows with ``env_kwargs`` (SPEC §2, §4).

Shared by ``examples/data_preprocess/preprocess_search_r1_dataset.py`` (train / test files) and
``generate_search_r1_val.py`` (the per-category validation file). Every row gets its ``skill_type``
from :func:`~agent_system.environments.env_package.search.classifier.classify_question`, training rows
included, so task skills are injected during training too (reference defect (d)).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from agent_system.environments.env_package.search.answers import gold_answer_list
from agent_system.environments.env_package.search.classifier import classify_question
from verl.utils.fs import atomic_path, shared_data_dir

ABILITY = "fact-reasoning"


def default_qa_dir() -> Path:
    return shared_data_dir() / "search" / "qa"


@dataclass(frozen=True)
class QARecord:
    id: str
    question: str
    golden_answers: tuple[str, ...]
    data_source: str


def _record(raw: Any, where: str) -> QARecord:
    expected = 'expected {"id", "question", "golden_answers": [...], "data_source"}'
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: got {type(raw).__name__}; {expected}")
    question, source = raw.get("question"), raw.get("data_source")
    if not isinstance(question, str) or not question.strip():
        raise ValueError(f"{where}: 'question' must be a non-empty string; {expected}")
    if not isinstance(source, str) or not source.strip():
        raise ValueError(f"{where}: 'data_source' must be a non-empty string; {expected}")
    try:
        answers = gold_answer_list(raw.get("golden_answers"))
    except ValueError as error:
        raise ValueError(f"{where}: 'golden_answers' {error}; {expected}") from None
    return QARecord(str(raw.get("id", where)), question.strip(), tuple(answers), source.strip())


def read_qa_jsonl(path: Path) -> list[QARecord]:
    """Validated records of one JSON-lines QA file; errors name the file and line."""
    records = []
    with path.open() as handle:
        for line_no, line in enumerate(handle, start=1):
            try:
                raw = json.loads(line)
            except ValueError as error:
                raise ValueError(f"{path}:{line_no}: not valid JSON ({error})") from None
            records.append(_record(raw, f"{path}:{line_no}"))
    return records


def read_qa_dir(folder: Path) -> list[QARecord]:
    """All records of the ``*.jsonl`` files of a folder, files in name order."""
    files = sorted(folder.glob("*.jsonl"))
    if not files:
        raise FileNotFoundError(f"no *.jsonl QA files in {folder}; pass --data_dir with Search-R1 style files")
    return [record for path in files for record in read_qa_jsonl(path)]


def records_from_frame(frame: pd.DataFrame, name: str) -> list[QARecord]:
    """Records from a Search-R1 parquet frame (``golden_answers`` or ``reward_model.ground_truth``)."""
    records = []
    for position, row in enumerate(frame.to_dict("records")):
        if row.get("golden_answers") is None and isinstance(row.get("reward_model"), dict):
            row["golden_answers"] = row["reward_model"].get("ground_truth")
        records.append(_record(row, f"{name} row {position}"))
    return records


def split_records(records: Sequence[QARecord], train_sources: Iterable[str], test_fraction: float,
                  seed: int) -> tuple[list[QARecord], list[QARecord]]:
    """Seeded split: each train source loses ``test_fraction`` of its records to the test set; every
    other source goes to the test set whole (out-of-domain evaluation, as in Search-R1)."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"--test_fraction={test_fraction} must be between 0 and 1")
    train_sources = set(train_sources)
    by_source: dict[str, list[QARecord]] = {}
    for record in records:
        by_source.setdefault(record.data_source, []).append(record)
    missing = sorted(train_sources - set(by_source))
    if missing:
        raise ValueError(f"--train_sources {missing} have no records; available: {sorted(by_source)}")
    rng = random.Random(seed)
    train, test = [], []
    for source in sorted(by_source):
        group = list(by_source[source])
        if source not in train_sources:
            test.extend(group)
            continue
        rng.shuffle(group)
        held_out = max(1, round(len(group) * test_fraction))
        test.extend(group[:held_out])
        train.extend(group[held_out:])
    rng.shuffle(train)
    return train, test


def task_row(record: QARecord, split: str, index: int) -> dict[str, Any]:
    """One parquet row (a task slot) in the verl / Search-R1 layout plus ``env_kwargs``."""
    answers = list(record.golden_answers)
    return {
        "data_source": record.data_source,
        "prompt": [{"role": "user", "content": record.question}],
        "ability": ABILITY,
        "reward_model": {"style": "rule", "ground_truth": {"target": answers}},
        "extra_info": {"split": split, "index": index, "id": record.id, "question": record.question},
        "env_kwargs": {
            "question": record.question,
            "ground_truth": answers,
            "data_source": record.data_source,
            "skill_type": classify_question(record.question, record.data_source),
        },
    }


def task_frame(records: Sequence[QARecord], split: str) -> pd.DataFrame:
    return pd.DataFrame([task_row(record, split, index) for index, record in enumerate(records)])


def cap_per_skill_type(frame: pd.DataFrame, max_per_type: int, seed: int) -> pd.DataFrame:
    """At most ``max_per_type`` rows of each ``env_kwargs.skill_type`` (seeded sample), shuffled."""
    if max_per_type < 1:
        raise ValueError(f"--max_sample={max_per_type} must be >= 1")
    skill_types = frame["env_kwargs"].map(lambda kwargs: kwargs["skill_type"])
    parts = [
        group.sample(n=min(len(group), max_per_type), random_state=seed)
        for _, group in frame.groupby(skill_types, sort=True)
    ]
    return pd.concat(parts).sample(frac=1.0, random_state=seed).reset_index(drop=True)


def write_parquet_atomic(frame: pd.DataFrame, path: Path) -> None:
    """Write ``frame`` so that readers see the old file or the complete new one."""
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)
