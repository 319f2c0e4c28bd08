"""Where the real expression sets are (``../shared/real`` beside the repository, or
``$EDGE_FER_REAL_DATA``), and a skip with the reason where they are absent.

They come from licensed research databases: tests read them in place, never copy them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_fer.data.spec import real_data_root

REAL = real_data_root()
CKPLUS48 = REAL / "ckplus48"
MEGC2019 = REAL / "htnet-megc2019"


def need(path: Path) -> Path:
    """``path`` if it exists, else skip the test saying what is missing."""
    if not path.exists():
        pytest.skip(f"real data absent: {path} (EDGE_FER_REAL_DATA: the folder with ckplus48/, htnet-megc2019/)")
    return path
