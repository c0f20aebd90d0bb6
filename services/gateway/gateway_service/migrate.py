"""`python -m gateway_service.migrate`: applies the gateway's database migrations and exits.

Run before the gateways start (the chart's pre-install/pre-upgrade Job) with a GATEWAY_DATABASE_URL
whose role may create tables; the gateways then run with GATEWAY_DATABASE_MIGRATE_ON_START=false
and a role that only reads and writes rows. Safe to run again: applied migrations are skipped, and
concurrent runs (or replicas migrating on start) take turns on an advisory lock.
"""

import asyncio
import logging
import sys

from llmsuite_common.logs import setup_logging
from pydantic import SecretStr

from .db import Database, latest_version
from .settings import GatewaySettings

log = logging.getLogger("gateway_service.migrate")


class MigrateSettings(GatewaySettings):
    """The gateway's settings as this command reads them: it serves no client, so needs no GATEWAY_API_KEY."""

    gateway_api_key: SecretStr = SecretStr("not-used-by-migrate")


async def apply(settings: GatewaySettings) -> list[int]:
    """The versions applied now; none when the schema was current or no database is configured."""
    if not Database.configured(settings):
        log.info("no database configured (GATEWAY_DATABASE_URL): nothing to migrate")
        return []
    database = Database(settings)
    try:
        return await database.open(migrate_schema=True)
    finally:
        await database.close()


def main() -> int:
    settings = MigrateSettings()
    setup_logging("gateway-migrate", settings.log_level)
    applied = asyncio.run(apply(settings))
    log.info("schema current", extra={"applied": applied, "version": latest_version()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
