"""CI's verdict on a finished test run, from the artifacts it left.

- The suite ran on PostgreSQL and Redis (tests/artifacts/backends.json), not on a fallback.
- It reports how many tests it skipped, and fails on any skip not listed in .ci/expected-skips:
  a skip must never hide a part that is missing on the CI machine (weights, a browser, a service).
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

EXPECTED_SKIPS = Path(__file__).with_name("expected-skips")


def _expected() -> set[str]:
    lines = EXPECTED_SKIPS.read_text().splitlines()
    return {line.split("#", 1)[0].strip() for line in lines} - {""}


def _skipped(junit: Path) -> list[tuple[str, str]]:
    skipped = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        skip = case.find("skipped")
        if skip is not None:
            node = f"{case.get('classname', '')}::{case.get('name', '')}"
            skipped.append((node, skip.get("message", "")))
    return skipped


def main(artifacts: Path) -> int:
    try:
        seen = json.loads((artifacts / "backends.json").read_text())
    except FileNotFoundError:
        print("CI: the run left no record of its database and Redis (backends.json)")
        return 1
    print(f"CI: tests ran on {seen}")
    if seen.get("database") != "postgresql" or not seen.get("redis_version"):
        print(f"CI: tests must run on PostgreSQL and Redis, saw {seen}")
        return 1
    skipped = _skipped(artifacts / "junit.xml")
    expected = _expected()
    print(f"CI: {len(skipped)} test(s) skipped")
    unexpected = [(node, why) for node, why in skipped if node not in expected]
    for node, why in skipped:
        print(f"  {'expected' if node in expected else 'UNEXPECTED'}: {node}: {why}")
    if unexpected:
        print(f"CI: {len(unexpected)} unexpected skip(s); a missing part must fail, not skip")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
