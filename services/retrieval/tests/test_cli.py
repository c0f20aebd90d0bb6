"""The command line against the real service: ingest with a progress bar, search, delete, collections."""

import asyncio
from pathlib import Path

import pytest
from retrieval_service import cli

from tests.service_auth import AUTHORITY

# A token as a team gets from `POST /v1/auth/token` (the exchange runs in the cross-service tests).
TOKEN = AUTHORITY.issuer.token(AUTHORITY.caller("cli-org"), "retrieval")


def run_cli(target: str, *args: str) -> int:
    # The CLI runs its own event loop; the service's loop must keep running meanwhile.
    return cli.main(["--target", target, "--token", TOKEN, *args])


async def test_ingest_search_and_delete_from_the_command_line(
    retrieval_target: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    docs = tmp_path / "docs"
    (docs / "team").mkdir(parents=True)
    (docs / "a.md").write_text("# Badges\n\nLost badges are replaced at reception for a fee of 10 euros.")
    (docs / "team" / "b.html").write_text("<h1>Kitchen</h1><p>The dishwasher runs every evening at six.</p>")
    (docs / "ignored.bin").write_bytes(b"\x00\x01")

    code = await asyncio.to_thread(
        run_cli, retrieval_target, "ingest", "notes", str(docs), "--meta", "team=ops"
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "2 of 2 documents stored" in out.out
    assert "2/2" in out.err  # the progress bar reached the end

    code = await asyncio.to_thread(
        run_cli, retrieval_target, "search", "notes", "replace a lost badge", "-k", "1"
    )
    out = capsys.readouterr().out
    assert code == 0 and "a.md#0" in out and "10 euros" in out

    await asyncio.to_thread(run_cli, retrieval_target, "collections")
    assert "notes\t2 documents" in capsys.readouterr().out

    code = await asyncio.to_thread(run_cli, retrieval_target, "delete", "notes", str(docs / "a.md"))
    assert code == 0 and "deleted 1 documents" in capsys.readouterr().out

    code = await asyncio.to_thread(run_cli, retrieval_target, "drop", "no-such-collection")
    assert code == 2 and "NOT_FOUND" in capsys.readouterr().err
