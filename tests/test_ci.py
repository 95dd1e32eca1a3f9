"""CI runs what the README tells a user to run: every test, slow ones included."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command_and_deselects_nothing():
    readme_commands = re.findall(r"```bash\n(.*?)\n```", (ROOT / "README.md").read_text(), flags=re.S)
    readme_tests = [command for command in readme_commands if command.startswith("python -m pytest")]
    ci_tests = [line for line in (ROOT / ".ci/run").read_text().splitlines() if line.startswith("python -m pytest")]
    assert readme_tests and ci_tests == readme_tests[:1], "the README's first test command must be the one .ci/run runs"
    options = ci_tests[0].removeprefix("python -m pytest")
    assert not re.search(r"(^|\s)(-m|-k|--deselect|--ignore)\b", options), f"CI must run every test: {ci_tests[0]}"
    assert "--durations=" in options
