"""What the venv has installed, for the tests that check imports against distributions
(test_packages for the editable projects, k8s/test_image_imports for the images)."""

import functools
import importlib.metadata
import re
from collections import defaultdict


def norm(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


@functools.cache
def module_owners() -> dict[str, frozenset[str]]:
    """Module name -> the installed distributions whose files provide it."""
    found: dict[str, set[str]] = defaultdict(set)
    for dist in importlib.metadata.distributions():
        name = norm(dist.metadata["Name"])
        for file in dist.files or ():
            if file.suffix not in (".py", ".pyi", ".so") or ".dist-info" in file.parts[0]:
                continue
            parts = [*file.parts[:-1], file.name.split(".")[0]]
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)].add(name)
    return {module: frozenset(names) for module, names in found.items()}
