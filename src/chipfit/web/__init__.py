"""The dashboard: `chipfit serve`, a page over the same JSON API (FastAPI, imported lazily)."""

from __future__ import annotations

from ..errors import ChipfitError

__all__ = ["create_app", "serve"]
SHUTDOWN_GRACE_S = 3  # open requests get this long after SIGTERM/SIGINT


def _missing(name: str) -> ChipfitError:
    return ChipfitError(f"The dashboard needs {name}: pip install 'chipfit[web]'.")


def create_app(db_path=None, catalog_dirs=(), hosts=None):
    """The FastAPI app: JSON API under /api, the page at /; see chipfit.web.app.create_app."""
    try:
        from .app import create_app as _create_app
    except ImportError as exc:
        raise _missing(exc.name or "fastapi") from None
    return _create_app(db_path=db_path, catalog_dirs=catalog_dirs, hosts=hosts)


def serve(host: str = "127.0.0.1", port: int = 8000, db_path=None, catalog_dirs=(), allow_hosts=()) -> None:
    """Run the dashboard with uvicorn until interrupted; binds loopback unless `host` says otherwise.

    Requests must name `host` (or a loopback name) or one of `allow_hosts` in their Host header. SIGTERM and
    SIGINT stop it within a few seconds: running traces are killed, upload folders removed."""
    if not 0 < port < 65536:
        raise ChipfitError(f"Port {port} is not a TCP port; give --port between 1 and 65535.")
    try:
        import uvicorn
    except ImportError:
        raise _missing("uvicorn") from None
    from .guard import allowed_hosts

    app = create_app(db_path=db_path, catalog_dirs=catalog_dirs, hosts=allowed_hosts(host, allow_hosts))
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                           timeout_graceful_shutdown=SHUTDOWN_GRACE_S))
    handle_exit = server.handle_exit

    def stop(sig, frame):  # stop running traces at once, not after the grace period
        app.state.board.closing.set()
        handle_exit(sig, frame)

    server.handle_exit = stop
    try:
        server.run()
    finally:
        app.state.board.close()
