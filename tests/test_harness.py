"""The test harness's own promises: a test whose tool is missing never goes green silently in CI."""

import pytest

from tests import require


def test_a_missing_tool_skips_on_a_developer_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="pgbouncer is not installed"):
        require(False, "pgbouncer is not installed")


def test_a_missing_tool_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "1")
    with pytest.raises(pytest.fail.Exception, match="chromium is not installed; CI is set"):
        require(False, "chromium is not installed")


def test_a_present_tool_runs_the_test(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "1")
    require(True, "never shown")
