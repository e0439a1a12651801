"""Where the repository and the shared test data are."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[4]
SHARED_DATA_ENV = "SKILLZERO_SHARED_DATA"


def shared_data_dir() -> Path:
    """``$SKILLZERO_SHARED_DATA``, else ``<repo root>/../shared/data`` (read-only test data)."""
    return Path(os.environ.get(SHARED_DATA_ENV) or REPO_ROOT.parent / "shared" / "data")
