"""Per-org policies from a directory, hot-reloaded.

`<dir>/<org_id>.yaml|.yml|.json` applies to that org; `<dir>/default.*` to every other org; with
neither, the built-in default (from settings) applies. A file that fails to parse or validate is
logged and skipped, and the org keeps its last good policy: a bad edit never opens the gates.
"""

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from llmsuite_common.rules.policy import Policy

from .engine import Guard
from .policy_files import parse_policy

log = logging.getLogger(__name__)

SUFFIXES = (".yaml", ".yml", ".json")
DEFAULT_NAME = "default"


@dataclass(frozen=True)
class _Loaded:
    stamp: tuple[int, int]
    guard: Guard


class PolicyStore:
    def __init__(self, directory: Path | None, builtin: Policy) -> None:
        self._dir = directory
        self._builtin = Guard(builtin)
        self._loaded: dict[str, _Loaded] = {}
        self.reload_errors = 0

    def guard_for(self, org_id: str) -> Guard:
        loaded = self._loaded.get(org_id) or self._loaded.get(DEFAULT_NAME)
        return loaded.guard if loaded is not None else self._builtin

    def refresh(self) -> list[str]:
        """Re-reads changed files, drops removed ones; returns the names whose policy changed."""
        if self._dir is None:
            return []
        seen: dict[str, Path] = {}
        try:
            entries = sorted(os.scandir(self._dir), key=lambda e: e.name)
        except OSError as err:
            log.error("policy directory unreadable", extra={"error": type(err).__name__})
            return []
        for entry in entries:
            path = Path(entry.path)
            if path.suffix in SUFFIXES and entry.is_file():
                seen.setdefault(path.stem, path)
        changed: list[str] = []
        for name in [n for n in self._loaded if n not in seen]:
            del self._loaded[name]
            changed.append(name)
            log.info("policy removed", extra={"policy": name})
        for name, path in seen.items():
            try:
                st = path.stat()
            except OSError:
                continue
            stamp = (st.st_mtime_ns, st.st_size)
            current = self._loaded.get(name)
            if current is not None and current.stamp == stamp:
                continue
            try:
                policy = parse_policy(path.read_text(encoding="utf-8"), suffix=path.suffix)
            except Exception as err:  # noqa: BLE001 - any bad file keeps the last good policy
                self.reload_errors += 1
                # Remember the stamp so a bad file is reported once, not on every scan.
                if current is not None:
                    self._loaded[name] = _Loaded(stamp, current.guard)
                log.error("policy rejected", extra={"policy": name, "error": str(err)[:500]})
                continue
            self._loaded[name] = _Loaded(stamp, Guard(policy))
            changed.append(name)
            log.info("policy loaded", extra={"policy": name, "version": policy.fingerprint()})
        return changed
