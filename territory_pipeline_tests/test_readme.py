"""README documents every setting and every table, and CI runs README's commands."""

import re
from pathlib import Path

from territory_pipeline.settings import ENVIRONMENT

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_every_setting_is_documented():
    missing = [var for var in ENVIRONMENT if f"`{var}`" not in README]
    assert not missing


def test_every_table_is_documented():
    tables = {p.stem for p in (ROOT / "sql").glob("*.sql")} - {"catalog"}
    missing = sorted(t for t in tables if f"`{t}`" not in README)
    assert not missing


def test_ci_runs_the_readme_commands():
    ci = (ROOT / ".ci" / "run").read_text()
    block = re.search(r"```bash\n(.*?)```", README, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert commands == ["./quickstart.sh", ".venv/bin/pytest"]
    for command in commands:
        assert command in ci
