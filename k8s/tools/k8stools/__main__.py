"""Usage: python -m k8stools {check | manifests | export DIR | try DIR [CHART]}

check      lint, render and schema-validate every values case; fail when k8s/manifests is stale
manifests  rewrite k8s/manifests from the chart's default values
export     write every case's rendered objects and the parsed Dockerfiles as JSON, for tests/k8s
try        render each DIR/*.json (values on top of the defaults) into DIR/<name>.out.json:
           {"error": Helm's message or null, "objects": [...]}, for tests of values the chart refuses;
           CHART: another copy of the chart (tests swap a template in it)
"""

import json
import sys
import time
from pathlib import Path

from helm_python import HelmError

from . import dockerfiles, manifests
from .lint import lint
from .paths import CHART, DOCKERFILES, MANIFESTS, OLDEST_KUBE, ROOT
from .render import DEFAULT_CASE, cases, documents, render
from .validate import newest_kube, validate


def check() -> int:
    started = time.monotonic()
    kube_versions = [OLDEST_KUBE, newest_kube()]
    failures: list[str] = []
    for case, values in cases().items():
        for kube in kube_versions:
            problems = lint(values, kube)
            failures += [f"lint [{case}, k8s {kube}] {p}" for p in problems]
            print(f"helm lint --strict  {case:<24} k8s {kube:<7} {'ok' if not problems else 'FAILED'}")
        try:
            rendered = render(values)
        except HelmError as exc:
            failures.append(f"render [{case}] {exc}")
            print(f"helm render         {case:<24} FAILED")
            continue
        objects = documents(rendered)
        for kube in kube_versions:
            errors = []
            for template, _, obj in objects:
                error = validate(obj, kube)
                if error:
                    errors.append(f"{template} {obj.get('kind')}/{obj['metadata'].get('name')}: {error}")
            failures += [f"schema [{case}, k8s {kube}] {e}" for e in errors]
            status = "ok" if not errors else f"{len(errors)} FAILED"
            print(f"kubernetes schemas  {case:<24} k8s {kube:<7} {len(objects)} objects {status}")
        if case == DEFAULT_CASE:
            changed = manifests.stale(rendered)
            failures += [f"k8s/manifests/{name} is stale: run `make manifests`" for name in changed]
            print(f"manifests fresh     {MANIFESTS.relative_to(ROOT)} {'ok' if not changed else 'STALE'}")
    for failure in failures:
        print(f"  {failure}")
    print(f"chart checks: {'FAILED' if failures else 'passed'} in {time.monotonic() - started:.1f}s")
    return 1 if failures else 0


def write_manifests() -> int:
    written = manifests.write(render(cases()[DEFAULT_CASE]))
    print(f"wrote {len(written)} files to {MANIFESTS.relative_to(ROOT)}: {', '.join(written)}")
    return 0


def export(directory: Path) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    for case, values in cases().items():
        rendered = render(values)
        objects = [{"template": t, "object": o} for t, _, o in documents(rendered)]
        (directory / f"{case}.json").write_text(json.dumps(objects))
        notes = next((text for name, text in rendered.items() if name.endswith("NOTES.txt")), "")
        (directory / f"{case}.NOTES.txt").write_text(notes)
    (directory / "dockerfiles.json").write_text(json.dumps(dockerfiles.parse_all(DOCKERFILES)))
    return 0


def try_values(directory: Path, chart: Path = CHART) -> int:
    for path in sorted(directory.glob("*.json")):
        if path.name.endswith(".out.json"):
            continue
        result: dict[str, object] = {"error": None, "objects": []}
        try:
            result["objects"] = [o for _, _, o in documents(render(json.loads(path.read_text()), chart))]
        except HelmError as exc:
            result["error"] = str(exc)
        path.with_name(f"{path.stem}.out.json").write_text(json.dumps(result))
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["check"]:
        return check()
    if argv[:1] == ["manifests"]:
        return write_manifests()
    if argv[:1] == ["export"] and len(argv) == 2:
        return export(Path(argv[1]))
    if argv[:1] == ["try"] and len(argv) in (2, 3):
        return try_values(Path(argv[1]), *(Path(a) for a in argv[2:]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
