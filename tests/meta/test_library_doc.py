"""docs/meta.md's example runs as written and meta-learning improves its held-out loss."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "meta.md"


def test_the_library_example_in_docs_meta_md_runs_and_meta_learns():
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 1
    namespace: dict = {}
    exec(compile(blocks[0], str(DOC), "exec"), namespace)  # noqa: S102
    before, after, state = namespace["before"], namespace["after"], namespace["state"]
    assert state.step == 300
    assert after < 0.7 * before  # the held-out query loss after 3 inner steps falls by over 30%
