"""The worker: runs the engine's workflows and activities against a Temporal server.

`python worker.py` connects to TEMPORAL_ADDRESS (default localhost:7233, the dev server
that `attend up` starts), makes sure every school's register-close Schedule exists, and
polls the task queue until stopped.
"""

import asyncio
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy.engine import Engine
from temporalio.client import Client
from temporalio.worker import Worker

from activities.sweep import SweepActivities
from database import make_engine, session_factory
from schedules import sync_schedules
from settings import Settings, get_settings
from workflows.sweep import RegisterCloseSweep

WORKFLOWS = [RegisterCloseSweep]


def build_worker(client: Client, *, engine: Engine, task_queue: str) -> Worker:
    """The worker with every workflow and activity, its dependencies built once here."""
    sweep = SweepActivities(session_factory(engine))
    return Worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        activities=[sweep.record_threshold_crossings],
        activity_executor=ThreadPoolExecutor(max_workers=8),
    )


async def run_worker(settings: Settings) -> None:
    client = await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace)
    engine = make_engine(settings.database_url)
    await sync_schedules(client, engine=engine, task_queue=settings.task_queue)
    await build_worker(client, engine=engine, task_queue=settings.task_queue).run()


if __name__ == "__main__":
    asyncio.run(run_worker(get_settings()))
