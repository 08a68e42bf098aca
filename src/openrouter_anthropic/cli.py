"""Command line: `openrouter-anthropic serve | worker | doctor | mcp-serve | fake-upstream |
version`."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from . import __version__
from .settings import Settings, SettingsError

_SETTINGS_ENV = "OPENROUTER_ANTHROPIC_SETTINGS_JSON"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="openrouter-anthropic",
        description="Anthropic Messages API server answered by models on OpenRouter.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="start the server")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 4000)")
    serve.add_argument("--config", help="YAML config file")
    serve.add_argument("--workers", type=int, default=1,
                       help="worker processes (each uses one core; default 1)")
    serve.add_argument("--log-level", help="debug, info, warning or error")
    serve.add_argument("--allow-unauthenticated", action="store_true",
                       help="serve a non-loopback address without client keys (unsafe: "
                       "anyone who reaches it spends your OpenRouter credit)")
    doctor = sub.add_parser("doctor", help="check the configuration and the upstream")
    doctor.add_argument("--config", help="YAML config file")
    sub.add_parser("fake-upstream", add_help=False,
                   help="run a fake OpenRouter on loopback (tests, demos, benchmarks); "
                   "see fake-upstream --help")
    worker = sub.add_parser("worker", help="run Message Batch flow runs from Prefect "
                            "(batches.executor: prefect; needs PREFECT_API_URL)")
    worker.add_argument("--config", help="YAML config file (the server's)")
    worker.add_argument("--limit", type=int, help="flow runs (batches) at once (default: any)")
    sub.add_parser("mcp-serve", add_help=False,
                   help="serve the workspace tools (Read, Write, Bash, ...) over MCP; "
                   "see mcp-serve --help")
    sub.add_parser("version", help="print the version")
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["fake-upstream"]:
        from .fake_upstream import main as fake_main

        return fake_main(argv[1:])
    if argv[:1] == ["mcp-serve"]:
        from .mcp_serve import main as mcp_serve_main

        return mcp_serve_main(argv[1:])
    args = parser.parse_args(argv)

    if args.command == "version":
        print(__version__)
        return 0
    if args.command == "doctor":
        from .doctor import run_doctor

        return run_doctor(args.config)
    if args.command == "worker":
        from .batches.worker import run_worker

        return run_worker(args.config, args.limit)
    return _serve(args)


def _serve(args: argparse.Namespace) -> int:
    try:
        settings = Settings.load(
            args.config,
            overrides={"host": args.host, "port": args.port, "log_level": args.log_level},
        )
        from .batches.config import BatchConfig

        BatchConfig.from_mapping(settings.batches).check_environment()
        from .tools.config import ServerToolsConfig

        ServerToolsConfig.parse(settings.server_tools)  # a bad section fails here, not later
    except SettingsError as exc:
        print(f"openrouter-anthropic: {exc}", file=sys.stderr)
        return 2
    if not settings.proxy_api_keys and not _is_loopback(settings.host) \
            and not args.allow_unauthenticated:
        print(f"openrouter-anthropic: refusing to serve {settings.host} without client keys: "
              "anyone who can reach it would spend your OpenRouter credit.\n"
              "Set PROXY_API_KEYS=key1,key2 (or proxy_api_keys in the config file), "
              "or pass --allow-unauthenticated.", file=sys.stderr)
        return 2
    if not settings.openrouter_api_key:
        print("openrouter-anthropic: warning: OPENROUTER_API_KEY is not set; "
              "the upstream will refuse requests unless it needs no key", file=sys.stderr)
    import uvicorn

    from .observability import configure_logging

    configure_logging(settings.log_level)
    _tune_gc()
    print(f"openrouter-anthropic {__version__}: listening on "
          f"http://{settings.host}:{settings.port} -> {settings.openrouter_base_url} "
          f"(big={settings.big_model}, small={settings.small_model})", file=sys.stderr)
    common: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "loop": "uvloop" if sys.platform != "win32" else "asyncio",
        "http": "httptools",
        "lifespan": "on",
        "access_log": False,
        "log_level": settings.log_level.lower(),
        "timeout_graceful_shutdown": settings.shutdown_grace,
    }
    # uvicorn re-raises the SIGTERM it handled once it has drained; this handler turns
    # that into a clean exit (status 0) instead of death by signal.
    signal.signal(signal.SIGTERM, lambda *_: None)
    if args.workers > 1:
        # Worker processes rebuild the same Settings from this variable.
        os.environ[_SETTINGS_ENV] = json.dumps(_plain(settings))
        uvicorn.run("openrouter_anthropic.cli:app_from_env", factory=True,
                    workers=args.workers, **common)
    else:
        from .app import create_app

        uvicorn.run(create_app(settings), **common)
    return 0


def _tune_gc() -> None:
    """Fewer, cheaper collections: a request allocates many short-lived dicts, and the
    objects alive after start-up (modules, tables) never need scanning again. Measured with
    bench/: the collector took ~8-11% of the gateway's CPU under load before this."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _plain(settings: Settings) -> dict[str, Any]:
    import dataclasses

    values = dataclasses.asdict(settings)
    values["proxy_api_keys"] = list(settings.proxy_api_keys)
    return values


def app_from_env() -> Any:
    """uvicorn factory for worker processes."""
    from .app import create_app
    from .observability import configure_logging

    settings = Settings.from_mapping(json.loads(os.environ[_SETTINGS_ENV]))
    configure_logging(settings.log_level)
    app = create_app(settings)
    _tune_gc()
    return app
