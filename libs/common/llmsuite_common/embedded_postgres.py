"""PostgreSQL 16 with pgvector from the pgserver wheel, for runs without a DSN.

pgserver keeps one server per data directory: processes pointing at the same
directory share it (a lock file serialises start-up, and the server's pid file says
who is running), and the last process to release it stops it. As root it runs the
server as a `pgserver` system user it creates, and listens only on a Unix socket.
"""

import atexit
import logging
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# pg_ctl has been seen to die at exec (SIGBUS, no server log written) on a loaded machine and
# succeed when run again; a start that fails this way is retried rather than failing the service.
START_ATTEMPTS = 3


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
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                self._server = pgserver.get_server(self._data_dir, cleanup_mode="stop")
                break
            except (subprocess.CalledProcessError, OSError) as err:
                forget_failed_start(pgserver.PostgresServer, self._data_dir)
                if attempt == START_ATTEMPTS:
                    raise
                log.warning(
                    "embedded postgres did not start; trying again",
                    extra={"attempt": attempt, "error": str(err)},
                )
                time.sleep(0.5 * attempt)
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


def forget_failed_start(server_class: Any, data_dir: Path) -> None:
    """pgserver caches a server object before starting it, so after a failed start the next
    get_server() would return the dead one; its exit hook would also stop a later, working server."""
    stale = server_class._instances.pop(data_dir, None)
    if stale is not None:
        atexit.unregister(stale._cleanup)
