"""The documents a newcomer reads stay true: the README is short and names the gateway's real backend
calls, the environment-variable table matches the settings classes, every relative link leads to a
file (and heading) that exists, and every command they show exists."""

import importlib.util
import re
import unicodedata
from pathlib import Path

import pytest

from tools.envtable import SERVICES, TARGET, render

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
SERVICE_GUIDES = sorted(ROOT.glob("services/*/README.md"))
DOCUMENTS = [README, *DOCS, *SERVICE_GUIDES]
MAX_README_BYTES = 10 * 1024
# Makefiles whose targets the documents may name: the root one and every file it includes.
MAKEFILES = [
    ROOT / "Makefile",
    *(
        ROOT / p
        for p in re.findall(r"^-?include (\S+)$", (ROOT / "Makefile").read_text(), re.M)
        if (ROOT / p).exists()
    ),
]

# The gRPC calls a chat request makes from the gateway, by service; the README's diagram shows each.
CHAT_CALLS = {
    "guardrails": ("CheckInput", "CheckContext", "GetOutputPolicy", "ValidateStructuredOutput"),
    "retrieval": ("Search",),
    "generation": ("Generate", "Complete"),
}

_LINK = re.compile(r"(?<!\!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
_MAKE = re.compile(r"`make ([a-z][\w-]*)")
_PYTHON_M = re.compile(r"python -m ([A-Za-z_][\w.]*)")
_MODULE_PATH = re.compile(r"`([\w.-]+(?:/[\w.-]+)*\.py)`")
# Where a module path a document names may start: the repository, the gateway's package (whose
# modules docs/architecture.md names by their path inside it), the shared runtime, each service.
PATH_ROOTS = [ROOT, ROOT / "services/gateway/gateway_service", ROOT / "libs/common", *ROOT.glob("services/*")]
# The service docs/adding-a-service.md adds, which the repository does not have.
EXAMPLE_SERVICE = "echo"


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _prose(text: str) -> str:
    """The text without its fenced code blocks (links there are code, not links)."""
    return _FENCE.sub("", text)


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    kept = "".join(c for c in text if c in "- " or unicodedata.category(c)[0] in "LN")
    return kept.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*#*$", _prose(path.read_text()), re.M)
    return {_slug(h) for h in headings}


def _links(path: Path) -> list[str]:
    return [a or b for a, b in _LINK.findall(_prose(path.read_text()))]


def _make_targets() -> set[str]:
    targets: set[str] = set()
    for makefile in MAKEFILES:
        targets |= set(re.findall(r"^([a-z][\w-]*)\s*:(?!=)", makefile.read_text(), re.M))
    return targets


def test_env_table_matches_settings_classes():
    text = TARGET.read_text()
    assert render(text) == text, f"the env table in {_name(TARGET)} is stale: run `make env-table`"


def test_env_table_covers_every_service():
    services = sorted(p.parent.parent.name for p in ROOT.glob("services/*/*_service/settings.py"))
    assert sorted(SERVICES) == services, "tools/envtable.py SERVICES must name every service"


def test_readme_stays_short():
    size = len(README.read_bytes())
    assert size <= MAX_README_BYTES, (
        f"README.md is {size} bytes; move details into docs/ (limit {MAX_README_BYTES})"
    )


def test_readme_links_every_document_in_docs():
    linked = {(README.parent / link.split("#")[0]).resolve() for link in _links(README)}
    orphans = [_name(doc) for doc in DOCS if doc.resolve() not in linked]
    assert orphans == [], f"README.md does not link {orphans}"


@pytest.mark.parametrize("document", DOCUMENTS, ids=_name)
def test_relative_links_resolve(document):
    broken = []
    for link in _links(document):
        if re.match(r"[a-z][a-z0-9+.-]*:", link):  # http:, https:, mailto:
            continue
        target, _, anchor = link.partition("#")
        path = (document.parent / target).resolve() if target else document
        if not path.exists():
            broken.append(link)
        elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
            broken.append(f"{link} (no such heading)")
    assert broken == [], f"{_name(document)}: broken links {broken}"


@pytest.mark.parametrize("document", DOCUMENTS, ids=_name)
def test_make_targets_exist(document):
    named = set(_MAKE.findall(document.read_text()))
    missing = sorted(named - _make_targets())
    assert missing == [], f"{_name(document)} names make targets no Makefile has: {missing}"


@pytest.mark.parametrize("document", DOCUMENTS, ids=_name)
def test_python_modules_exist(document):
    modules = {m for m in _PYTHON_M.findall(document.read_text()) if not m.startswith(EXAMPLE_SERVICE)}
    missing = sorted(m for m in modules if importlib.util.find_spec(m) is None)
    assert missing == [], f"{_name(document)} runs modules that do not exist: {missing}"


@pytest.mark.parametrize("document", DOCUMENTS, ids=_name)
def test_named_modules_exist(document):
    named = {m for m in _MODULE_PATH.findall(document.read_text()) if "/" in m and EXAMPLE_SERVICE not in m}
    missing = sorted(
        m for m in named if not any((base / m).exists() for base in [document.parent, *PATH_ROOTS])
    )
    assert missing == [], f"{_name(document)} names modules that do not exist: {missing}"


@pytest.mark.parametrize("document", DOCUMENTS, ids=_name)
def test_commands_need_no_hand_set_pythonpath(document):
    # `make install` installs every package; commands are `.venv/bin/python -m <module>`.
    assert "PYTHONPATH=" not in document.read_text(), f"{_name(document)} sets PYTHONPATH by hand"


def test_readme_diagram_shows_every_backend_call_of_a_chat_request():
    from llmsuite.generation.v1 import generation_pb2
    from llmsuite.guardrails.v1 import guardrails_pb2
    from llmsuite.retrieval.v1 import retrieval_pb2

    services = {
        "guardrails": guardrails_pb2.DESCRIPTOR.services_by_name["GuardrailsService"],
        "retrieval": retrieval_pb2.DESCRIPTOR.services_by_name["RetrievalService"],
        "generation": generation_pb2.DESCRIPTOR.services_by_name["GenerationService"],
    }
    gateway = "\n".join(p.read_text() for p in (ROOT / "services/gateway/gateway_service").rglob("*.py"))
    diagram = re.search(r"```\n(.*?)```", README.read_text(), re.S)
    assert diagram, "README.md opens with no diagram"
    for service, methods in CHAT_CALLS.items():
        for method in methods:
            assert method in services[service].methods_by_name, f"{service}.{method} is not in protos/"
            assert re.search(rf"\.{method}\b", gateway), f"the gateway no longer calls {service}.{method}"
            assert f"{service}.{method}" in diagram[1], f"README.md's diagram lacks {service}.{method}"
