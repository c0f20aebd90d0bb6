"""The chart's PrometheusRule groups under Prometheus' own tool: `promtool check rules` on every
rendered case, and `promtool test rules` on the unit tests in rules/ (input series for each alert:
the scenario that fires it, the healthy one that does not; known input for each recording rule).

The groups are rendered with the default values plus metrics.prometheusRule.enabled (release and
namespace "llmsuite", as the unit tests' series are labelled) and written where the unit tests
expect them, llmsuite-rules.yaml beside a copy of each test file. To rerun promtool by hand, keep
pytest's temporary directory (`--basetemp DIR`) and run `promtool test rules DIR/.../*.test.yaml`.
"""

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import K8S_PYTHON, ROOT
from k8s_objects import of_kind

RULE_TESTS = Path(__file__).resolve().parent / "rules"
RULES_FILE = "llmsuite-rules.yaml"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not found: it comes with Prometheus (Debian/Ubuntu: apt-get install prometheus; "
    "`make install` does that when run as root with apt-get)",
)


def _groups(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rules = of_kind(objects, "PrometheusRule")
    assert len(rules) == 1, f"expected one PrometheusRule, found {len(rules)}"
    return list(rules[0]["spec"]["groups"])


def _write_rules(path: Path, groups: list[dict[str, Any]]) -> Path:
    # What the Prometheus Operator hands Prometheus: the spec's groups as a rule file.
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False, width=200))
    return path


@pytest.fixture(scope="module")
def groups(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """The default values' rule groups (the `export_dir` fixture has already built k8s/.venv)."""
    directory = tmp_path_factory.mktemp("k8s-rules-values")
    (directory / "rules.json").write_text(json.dumps({"metrics": {"prometheusRule": {"enabled": True}}}))
    done = subprocess.run(
        [str(K8S_PYTHON), "-m", "k8stools", "try", str(directory)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads((directory / "rules.out.json").read_text())
    assert result["error"] is None, result["error"]
    return _groups(result["objects"])


@pytest.fixture(scope="module")
def unit_dir(groups, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("promtool-unit")
    _write_rules(directory / RULES_FILE, groups)
    for test in RULE_TESTS.glob("*.test.yaml"):
        shutil.copy(test, directory / test.name)
    return directory


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


def _unit_tests() -> dict[str, dict[str, Any]]:
    return {p.name: yaml.safe_load(p.read_text()) for p in sorted(RULE_TESTS.glob("*.test.yaml"))}


def _rules(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [rule for group in groups for rule in group["rules"]]


# promtool itself.


@needs_promtool
def test_promtool_checks_every_rendered_rule_group(rendered, groups, tmp_path):
    cases = {"default+prometheusRule": groups}
    cases |= {
        case: _groups(objects) for case, objects in rendered.items() if of_kind(objects, "PrometheusRule")
    }
    for case, case_groups in cases.items():
        path = _write_rules(tmp_path / f"{case}.rules.yaml", case_groups)
        done = _promtool("check", "rules", str(path), cwd=tmp_path)
        assert done.returncode == 0, f"{case}:\n{done.stdout}\n{done.stderr}"
        assert f"SUCCESS: {len(_rules(case_groups))} rules found" in done.stdout, done.stdout


@needs_promtool
@pytest.mark.parametrize("name", sorted(_unit_tests()))
def test_promtool_unit_tests(unit_dir, name):
    done = _promtool("test", "rules", name, cwd=unit_dir)
    assert done.returncode == 0, f"promtool test rules {name}:\n{done.stdout}\n{done.stderr}"


# What the unit tests cover: no promtool needed to check that.


def _alert_cases() -> list[tuple[str, str, dict[str, Any]]]:
    """(file, test name, alert_rule_test entry) for every alert expectation."""
    return [
        (file, test.get("name", "?"), case)
        for file, doc in _unit_tests().items()
        for test in doc["tests"]
        for case in test.get("alert_rule_test", [])
    ]


def test_every_alert_has_a_scenario_that_fires_it_and_one_that_does_not(groups):
    alerts = {rule["alert"] for rule in _rules(groups) if "alert" in rule}
    fired = {case["alertname"] for _, _, case in _alert_cases() if case.get("exp_alerts")}
    silent = {case["alertname"] for _, _, case in _alert_cases() if not case.get("exp_alerts")}
    assert alerts - fired == set(), f"alerts no unit test fires: {sorted(alerts - fired)}"
    assert alerts - silent == set(), f"alerts no unit test shows silent: {sorted(alerts - silent)}"
    assert (fired | silent) - alerts == set(), (
        f"unit tests of alerts the chart lacks: {sorted((fired | silent) - alerts)}"
    )


def test_every_burn_rate_window_fires_in_some_scenario(groups):
    windows = {
        rule["labels"]["window"] for rule in _rules(groups) if rule.get("alert") == "LlmsuiteErrorBudgetBurn"
    }
    fired = {
        alert["exp_labels"]["window"]
        for _, _, case in _alert_cases()
        if case["alertname"] == "LlmsuiteErrorBudgetBurn"
        for alert in case.get("exp_alerts") or []
    }
    assert windows == {"1h", "6h", "1d", "3d"}, windows
    assert windows <= fired, f"burn windows no scenario fires: {sorted(windows - fired)}"


def test_every_recording_rule_has_a_value_test(groups):
    records = {rule["record"] for rule in _rules(groups) if "record" in rule}
    exprs = " ".join(
        case["expr"]
        for doc in _unit_tests().values()
        for test in doc["tests"]
        for case in test.get("promql_expr_test", [])
    )
    untested = {r for r in records if re.search(rf"{re.escape(r)}(?![a-z0-9_])", exprs) is None}
    assert not untested, f"recording rules no promql_expr_test reads: {sorted(untested)}"


def test_unit_tests_read_the_rendered_rule_file_and_evaluate_groups_in_file_order(groups):
    order = [group["name"] for group in groups]
    for file, doc in _unit_tests().items():
        assert doc["rule_files"] == [RULES_FILE], file
        # Records before the rules that read them, as the groups stand in the file.
        assert doc.get("group_eval_order") == order, f"{file}: group_eval_order should be {order}"
