"""Tests README.md: its Python snippets run as written, each on its own (issue 16, case 19).

Each ```python block of the README's "Python users" section runs in a fresh namespace, in a folder where
``examples/`` is the repository's, in the order the README gives them (a later one may read the run folder
an earlier one wrote, as a reader following the README would). Training lengths are shortened to one epoch
(``epochs=N`` and ``train.epochs=N``), the only change, so that the test takes seconds.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).parents[1] / "README.md"


def python_snippets(section: str) -> list[str]:
    """The ```python blocks of the README section whose heading is ``section``."""
    text = README.read_text(encoding="utf-8")
    start = text.index(section)
    end = text.index("\n### ", start + len(section))
    return re.findall(r"```python\n(.*?)```", text[start:end], flags=re.S)


def one_epoch(code: str) -> str:
    return re.sub(r"epochs=\d+", "epochs=1", code)


@pytest.mark.slow
def test_the_python_users_snippets_run_on_their_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    snippets = python_snippets("### 2. Python users")
    assert len(snippets) == 3
    monkeypatch.chdir(tmp_path)
    (tmp_path / "examples").symlink_to(README.parent / "examples")
    for code in snippets:
        exec(compile(one_epoch(code), str(README), "exec"), {"__name__": "readme"})  # noqa: S102
    assert (tmp_path / "runs" / "cvae-py" / "model.safetensors").is_file()
    assert (tmp_path / "hand.safetensors").is_file()
