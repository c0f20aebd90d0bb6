"""PostgreSQL 16 with pgvector from the pgserver wheel, for runs without a DSN.

pgserver keeps one server per data directory: processes pointing at the same
directory share it (a lock file serialises start-up, and the server's pid file says
who is running), and the last process to release it stops it. As root it runs the
server as a `pgserver` system user it creates, and listens only on a Unix socket.
"""

import logging
import time
import warnings
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class EmbeddedPostgres:
    def __init__(self, data_dir: str) -> None:
        self._data_dir = Path(data_dir).expanduser().resolve()
        self._server: Any = None

    def start(self) -> str:
        """Start or join the server; returns its connection URI (blocking: call off the loop)."""
        # Its INFO lines repeat the whole pid file and every command line on each start.
        logging.getLogger("pgserver").setLevel(logging.WARNING)
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (containers); pgserver then
            # keeps its lock file under /tmp/runtime-<uid>, which is what we want anyway.
            warnings.simplefilter("ignore")
            import pgserver

        started = time.perf_counter()
        self._data_dir.parent.mkdir(parents=True, exist_ok=True)
        self._server = pgserver.get_server(self._data_dir, cleanup_mode="stop")
        log.info(
            "embedded postgres ready",
            extra={"data_dir": str(self._data_dir), "seconds": round(time.perf_counter() - started, 3)},
        )
        return str(self._server.get_uri())

    def release(self) -> None:
        """Let go of the server; it stops when no other process still uses it."""
        if self._server is not None:
            self._server.cleanup()
            self._server = None
