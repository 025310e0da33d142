"""The training tests share tests/train_fixtures.py (the tiny model, pairs and configs)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
