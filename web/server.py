"""Running the web app with uvicorn: alone (`attend web serve`) or beside the worker
(`attend up` awaits `serve(settings)` in the same event loop)."""

import uvicorn
from sqlalchemy.engine import Engine
from temporalio.client import Client

from settings import Settings
from web.app import create_app


def server(
    settings: Settings,
    *,
    engine: Engine | None = None,
    temporal_client: Client | None = None,
    host: str | None = None,
    port: int | None = None,
) -> uvicorn.Server:
    app = create_app(settings, engine=engine, temporal_client=temporal_client)
    config = uvicorn.Config(
        app,
        host=host or settings.web_host,
        port=port if port is not None else settings.web_port,
        log_level="info",
        # Access lines carry the method, the path (internal IDs only) and the status.
        access_log=True,
        proxy_headers=False,
        server_header=False,
    )
    return uvicorn.Server(config)


async def serve(
    settings: Settings,
    *,
    engine: Engine | None = None,
    temporal_client: Client | None = None,
) -> None:
    """Serve on settings.web_host:web_port (default 127.0.0.1:8000) until stopped."""
    await server(settings, engine=engine, temporal_client=temporal_client).serve()
