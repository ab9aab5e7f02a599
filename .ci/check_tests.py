"""Test conventions a linter does not check (run by .ci/run before the tests).

Every ``pytest.raises`` names the message it expects (``match=``), so a test cannot pass
on the wrong error.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests"


def problems() -> list[str]:
    found = []
    for path in sorted(TESTS.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and ast.unparse(node.func) == "pytest.raises"
                and not any(k.arg == "match" for k in node.keywords)
            ):
                found.append(f"{path}:{node.lineno}: pytest.raises without match=")
    return found


if __name__ == "__main__":
    out = problems()
    print("\n".join(out) or "test conventions: ok")
    sys.exit(1 if out else 0)
