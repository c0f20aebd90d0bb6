from pathlib import Path

from tools.envtable import render

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_env_table_matches_settings_classes():
    text = README.read_text()
    assert render(text) == text, "README env table is stale: run `make env-table`"
