"""The README's "Use echat in your tests" examples run as written, in a suite of their own."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

README = Path(__file__).parent.parent / "README.md"
SECTION = "## Use echat in your tests"


def examples() -> list[str]:
    text = README.read_text(encoding="utf-8")
    assert SECTION in text
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


def test_the_section_has_a_sync_and_a_pytest_trio_example() -> None:
    sync, trio_example = examples()
    assert "echat_server" in sync and "httpx.Client" in sync
    assert "@pytest.mark.trio" in trio_example and "open_websocket_url" in trio_example


@pytest.mark.parametrize("index", [0, 1], ids=["sync_httpx", "pytest_trio_websocket"])
def test_the_example_passes_as_written(pytester: pytest.Pytester, index: int) -> None:
    pytester.makepyfile(test_example=examples()[index])
    pytester.runpytest().assert_outcomes(passed=1)
