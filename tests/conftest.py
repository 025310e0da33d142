"""Shared by every test folder: tests/ itself is importable, so tiny_models.py (the tiny Llama models
and tokenizer) and train_fixtures.py (the training engine's tiny run) can be imported from anywhere."""

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))
