"""SIGTERM always ends the process within its budget (DRAIN_SECONDS + SHUTDOWN_GRACE_SECONDS), even
when the request log cannot be written: here every insert waits on a lock the test holds, so the
final flush can never finish. The rows still queued at the deadline are dropped, counted and logged
by number only, and the process exits 0."""

import json
import secrets
import signal
import time

import httpx
import psycopg

from services.gateway.tests.lock_waits import wait_for_lock_waiter_sync
from services.gateway.tests.test_process import gateway_env, spawn_gateway, unused_port

API_KEY = "sk-shutdown-budget"
DRAIN_SECONDS = 1.0
GRACE_SECONDS = 4.0
# Interpreter exit and telemetry shutdown after the last step of the budget.
EXIT_SLACK_SECONDS = 2.0
ROWS = 3


def test_sigterm_exits_within_drain_plus_grace_while_the_request_log_cannot_be_written(
    tmp_path, postgres_dsn
):
    port = unused_port()
    log = tmp_path / "gateway.log"
    env = gateway_env(
        GATEWAY_API_KEY=API_KEY,
        PORT=str(port),
        GATEWAY_DATABASE_URL=postgres_dsn,
        GATEWAY_USAGE_FLUSH_SECONDS="0.1",
        GATEWAY_REQUEST_LOG_RETENTION_DAYS="0",
        DRAIN_SECONDS=str(DRAIN_SECONDS),
        SHUTDOWN_GRACE_SECONDS=str(GRACE_SECONDS),
    )
    proc, url = spawn_gateway(env, log)
    secret = "words-" + secrets.token_hex(6)
    try:
        with psycopg.connect(postgres_dsn) as locker:
            locker.execute("LOCK TABLE gateway.usage_events IN ACCESS EXCLUSIVE MODE")
            auth = {"authorization": f"Bearer {API_KEY}"}
            with httpx.Client(base_url=url, headers=auth, timeout=10) as http:
                for i in range(ROWS):
                    # No backends run: each request fails after admission, and is logged as failed.
                    response = http.post(
                        "/v1/chat/completions",
                        json={"model": "m", "messages": [{"role": "user", "content": f"{secret} {i}"}]},
                    )
                    assert response.status_code == 503, response.text
                wait_for_lock_waiter_sync(postgres_dsn)  # the writer is blocked inside its insert
                depth = [
                    line
                    for line in http.get("/metrics").text.splitlines()
                    if line.startswith("llmsuite_gateway_usage_queue_depth ")
                ]
                assert depth and float(depth[0].split()[1]) == ROWS

            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(DRAIN_SECONDS + GRACE_SECONDS + EXIT_SLACK_SECONDS + 10)
            took = time.monotonic() - started
            locker.rollback()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)

    assert code == 0
    assert took <= DRAIN_SECONDS + GRACE_SECONDS + EXIT_SLACK_SECONDS, took
    text = log.read_text(errors="replace")
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    dropped = [line for line in lines if line.get("msg") == "request log rows not written before exit"]
    assert dropped and dropped[0]["rows"] == ROWS, text[-3000:]
    assert secret not in text
