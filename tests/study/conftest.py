"""Fixtures of the study's fast tier (the scripted fake fine-tune: tests/helpers/fake_finetune)."""

from __future__ import annotations

import pytest


@pytest.fixture
def fast_overrides(sweep_overrides) -> list[str]:
    """The quick sweep (every store under tmp_path, the MLflow store a copy of the migrated
    template) for the fake fine-tune, no report (the tests of the report ask for one)."""
    return [*sweep_overrides, "report.enabled=false"]
