"""A start that dies the way pg_ctl once did in CI (SIGBUS, no server log) is retried, and the
failed attempt leaves nothing behind that would poison the next one."""

import atexit
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pgserver
import psycopg
from llmsuite_common.embedded_postgres import EmbeddedPostgres


class DeadOnStart:
    """Registers itself the way pgserver's constructor does, then dies like pg_ctl did."""

    def __init__(self, data_dir: Path) -> None:
        pgserver.PostgresServer._instances[data_dir] = self
        atexit.register(self._cleanup)

    def _cleanup(self) -> None:
        raise AssertionError("the failed start's exit hook must have been removed")


def test_a_start_killed_by_a_signal_is_retried_and_the_server_works(monkeypatch):
    work = Path(tempfile.mkdtemp(prefix="epg-", dir="/tmp"))
    work.chmod(0o755)
    real_get_server = pgserver.get_server
    calls: list[Path] = []

    def flaky_get_server(data_dir, cleanup_mode="stop"):
        calls.append(Path(data_dir))
        if len(calls) == 1:
            dead = DeadOnStart(Path(data_dir))
            assert pgserver.PostgresServer._instances[Path(data_dir)] is dead
            raise subprocess.CalledProcessError(-signal.SIGBUS, ["pg_ctl", "start"])
        return real_get_server(data_dir, cleanup_mode=cleanup_mode)

    monkeypatch.setattr(pgserver, "get_server", flaky_get_server)
    server = EmbeddedPostgres(str(work / "pg"))
    try:
        uri = server.start()
        assert len(calls) == 2
        assert not isinstance(pgserver.PostgresServer._instances[calls[1]], DeadOnStart)
        with psycopg.connect(uri) as conn:
            assert conn.execute("SELECT 1 + 1").fetchone() == (2,)
    finally:
        server.release()
        shutil.rmtree(work, ignore_errors=True)
