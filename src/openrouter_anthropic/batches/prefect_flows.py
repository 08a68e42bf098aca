"""Prefect: the batch flow and chunk task, their deployment, and flow-run submission.

`process_batch_flow` and `process_chunk_task` wrap the very functions the server runs
in-process (`work.py`); their parameters are ids only, and neither persists a result, so
request bodies and answers stay in the batch store, never in Prefect's result storage.

Flow runs execute on an `openrouter-anthropic worker` (a Prefect process worker on the
`batches.prefect_work_pool` pool): each starts a process that loads this module from the
deployment's entrypoint, builds its runtime from the settings the worker put in its
environment, works the batch off and ends Completed.

Importing this module imports Prefect (about a second): only the worker, flow-run processes
and a server with `executor: prefect` do.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Mapping

from prefect import flow, get_client, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

from ..gateway import Gateway
from ..profiles import Profiles
from ..routing import Router
from ..upstream.openrouter import OpenRouterUpstream
from .config import BatchConfig
from .db import open_database
from .runtime import Runtime, set_factory, settings_from_env
from .schema import create_schema
from .store import BatchStore
from .work import process_batch, process_chunk

FLOW_NAME = "process-message-batch"
ENTRYPOINT = "openrouter_anthropic.batches.prefect_flows:process_batch_flow"
_DONE_STATES = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})

# Flow retries cover a store or Prefect hiccup; the requests' own retries live in the store.
process_batch_flow = flow(name=FLOW_NAME, flow_run_name="{batch_id}", persist_result=False,
                          retries=3, retry_delay_seconds=5)(process_batch)
process_chunk_task = task(name="process-chunk", task_run_name="{batch_id} chunk {chunk}",
                          persist_result=False, cache_policy=NO_CACHE)(process_chunk)


async def _run_chunk_task(batch_id: str, chunk: int) -> dict[str, int]:
    result: dict[str, int] = await process_chunk_task(batch_id, chunk)
    return result


async def _build_runtime() -> Runtime:
    """A flow-run process's runtime: its own store connection, upstream pool and limit."""
    settings = settings_from_env()
    config = BatchConfig.from_mapping(settings.batches)
    db = await open_database(config.database_url, config.concurrency + 4)
    await create_schema(db)
    upstream = OpenRouterUpstream(
        settings.openrouter_base_url, settings.openrouter_api_key,
        app_url=settings.app_url, app_title=settings.app_title,
        connect_timeout=settings.connect_timeout,
        first_byte_timeout=settings.first_byte_timeout,
        max_connections=settings.max_connections)
    router = Router(settings.big_model, settings.small_model, settings.aliases,
                    settings.fallbacks)
    # max_retries=0: the batch layer retries, and records, every attempt itself.
    gateway = Gateway(settings.replace(max_retries=0), upstream, router, Profiles())
    return Runtime(config, BatchStore(db), gateway, _run_chunk_task, owns=True)


set_factory(_build_runtime)


def deployment_name(config: BatchConfig) -> str:
    return f"{FLOW_NAME}/{config.prefect_deployment}"


async def ensure_deployment(config: BatchConfig) -> uuid.UUID:
    """The work pool (process type) and the deployment, created or updated: idempotent."""
    from prefect.workers.process import ProcessWorker

    async with get_client() as client:
        try:
            await client.read_work_pool(config.prefect_work_pool)
        except ObjectNotFound:
            template = ProcessWorker.get_default_base_job_template()
            with contextlib.suppress(ObjectAlreadyExists):  # a worker made it meanwhile
                await client.create_work_pool(WorkPoolCreate(
                    name=config.prefect_work_pool, type="process", base_job_template=template))
        flow_id = await client.create_flow_from_name(FLOW_NAME)
        return await client.create_deployment(
            flow_id=flow_id,
            name=config.prefect_deployment,
            work_pool_name=config.prefect_work_pool,
            entrypoint=ENTRYPOINT,
            parameter_openapi_schema=process_batch_flow.parameters.model_dump_for_openapi(),
            enforce_parameter_schema=True,
            description="Works one Message Batch off (openrouter-anthropic-server).",
        )


async def submit(deployment_id: uuid.UUID, batch_id: str, previous: str | None) -> str:
    """A flow run of the deployment for this batch (replacing `previous`); its id.

    Idempotent: server processes that submit the same batch at once (`serve --workers N`,
    instances sharing a store) all get the one flow run Prefect made for the first."""
    async with get_client() as client:
        run = await client.create_flow_run_from_deployment(
            deployment_id, parameters={"batch_id": batch_id}, name=batch_id,
            tags=["message-batch"], idempotency_key=f"{batch_id}/after/{previous or '-'}")
    return str(run.id)


async def dead_flow_runs(runs: Mapping[str, str]) -> list[str]:
    """Batches (still open) whose flow run has ended or vanished: they need another."""
    if not runs:
        return []
    ids = [uuid.UUID(run_id) for run_id in runs.values()]
    async with get_client() as client:
        found = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)), limit=len(ids))
    states = {str(run.id): run.state_type.value if run.state_type else "" for run in found}
    return [batch_id for batch_id, run_id in runs.items()
            if states.get(run_id, "COMPLETED") in _DONE_STATES]
