"""The dashboard: `chipfit serve`, a page over the same JSON API (FastAPI, imported lazily)."""

from __future__ import annotations

from ..errors import ChipfitError

__all__ = ["create_app", "serve"]


def _missing(name: str) -> ChipfitError:
    return ChipfitError(f"The dashboard needs {name}: pip install 'chipfit[web]'.")


def create_app(db_path=None, catalog_dirs=()):
    """The FastAPI app: JSON API under /api, the page at /; see chipfit.web.app.create_app."""
    try:
        from .app import create_app as _create_app
    except ImportError as exc:
        raise _missing(exc.name or "fastapi") from None
    return _create_app(db_path=db_path, catalog_dirs=catalog_dirs)


def serve(host: str = "127.0.0.1", port: int = 8000, db_path=None, catalog_dirs=()) -> None:
    """Run the dashboard with uvicorn until interrupted; binds loopback unless `host` says otherwise."""
    if not 0 < port < 65536:
        raise ChipfitError(f"Port {port} is not a TCP port; give --port between 1 and 65535.")
    try:
        import uvicorn
    except ImportError:
        raise _missing("uvicorn") from None
    app = create_app(db_path=db_path, catalog_dirs=catalog_dirs)
    uvicorn.run(app, host=host, port=port, log_level="warning")
