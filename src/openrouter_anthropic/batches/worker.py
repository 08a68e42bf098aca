"""`openrouter-anthropic worker`: runs batch flow runs for a server with `executor: prefect`.

A Prefect process worker on `batches.prefect_work_pool`: it takes the flow runs the server
submits (one per batch) and runs each in a process of its own, against the shared batch
store (PostgreSQL when workers run on several machines). Start as many as you like; the
store's leases keep them from running a request twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys

from ..settings import Settings, SettingsError
from .config import BatchConfig
from .db import open_database
from .runtime import SETTINGS_ENV, settings_to_env
from .schema import create_schema


def run_worker(config_file: str | None, limit: int | None) -> int:
    try:
        settings = Settings.load(config_file)
        config = BatchConfig.from_mapping(settings.batches)
    except SettingsError as exc:
        print(f"openrouter-anthropic worker: {exc}", file=sys.stderr)
        return 2
    if not os.environ.get("PREFECT_API_URL"):
        print("openrouter-anthropic worker: set PREFECT_API_URL to the Prefect server's API "
              "(e.g. http://127.0.0.1:4200/api)", file=sys.stderr)
        return 2
    if limit is not None and limit < 1:
        print("openrouter-anthropic worker: --limit must be 1 or more", file=sys.stderr)
        return 2
    # Flow-run processes inherit the worker's environment: they rebuild these Settings.
    os.environ[SETTINGS_ENV] = settings_to_env(settings)
    # Our log lines reach the Prefect UI with the flow run's own.
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "openrouter_anthropic")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(config, limit))
    return 0


async def _serve(config: BatchConfig, limit: int | None) -> None:
    db = await open_database(config.database_url, 2)
    try:
        await create_schema(db)  # the store is ready before the first flow run needs it
    finally:
        await db.close()

    from prefect.workers.process import ProcessWorker

    from .prefect_flows import deployment_name, ensure_deployment

    await ensure_deployment(config)
    print(f"openrouter-anthropic worker: serving deployment {deployment_name(config)!r} "
          f"from work pool {config.prefect_work_pool!r}", file=sys.stderr, flush=True)
    async with ProcessWorker(work_pool_name=config.prefect_work_pool, limit=limit) as worker:
        await worker.start()
