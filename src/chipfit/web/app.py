"""The dashboard's FastAPI app: a JSON API over chipfit's Python API, and the page that uses it.

Models are zoo names or files uploaded to a temporary folder (parsed by chipfit's own
loaders, never imported as code). Profiles are cached by their arguments, so a repeated
compare is a fast loop over the catalog; blocking work runs in the server's thread pool.
"""

from __future__ import annotations

import hashlib
import math
import re
import shutil
import threading
import time
from collections import OrderedDict
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Callable, Literal

from fastapi import FastAPI, HTTPException, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from pydantic import BaseModel, ConfigDict, Field

from .. import __version__
from ..catalog import load_catalog
from ..catalog.schema import CLASSES, FRAMEWORKS
from ..errors import ChipfitError, closest, unexpected
from ..store import RUN_KINDS
from . import guard
from ..workload.workload import OPTIMIZERS, PRECISION_CHOICES

STATIC_DIR = Path(__file__).parent / "static"
MAX_UPLOAD_BYTES = 64 * 2**20
# Multipart framing around the file: boundaries and part headers, a few hundred bytes in practice.
MULTIPART_OVERHEAD_BYTES = 64 * 2**10
UPLOAD_SUFFIXES = (".onnx", ".prototxt", ".keras")
HF_CONFIG_NAME = "config.json"
UPLOAD_PREFIX = "upload:"
PROFILE_CACHE_SIZE = 64
# The page and API load nothing from elsewhere; the SVG plots are drawn by the page's own script.
CONTENT_SECURITY_POLICY = "default-src 'self'; img-src 'self' data:; object-src 'none'; frame-ancestors 'none'"


class CompareRequest(BaseModel):
    """One job and its constraints; the fields of `chipfit compare` (class and framework filter the catalog)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    model: str | None = Field(None, description="a zoo name (GET /api/models) or an upload id (POST /api/upload)")
    spec: str | None = Field(None, description="instead of model, a transformer by its sizes: "
                                               "layers=80,hidden=8192,heads=64,kv_heads=8,ffn=28672,vocab=128256")
    mode: Literal["train", "infer"] | None = Field(None, description="default: train, infer for graph files")
    batch: int | None = Field(None, description="global batch, samples or sequences per step; default: training 32 "
                                                "per device, inference 1 per device")
    seq: int | None = Field(None, description="sequence length; default the model's context")
    samples: float | None = Field(None, description="training samples per epoch, or inference requests")
    epochs: float = 1.0
    tokens: float | None = Field(None, description="training tokens (sequence models)")
    precision: Literal[PRECISION_CHOICES] | None = Field(None, description="default: bf16 (mixed precision for "
                                                                           "training), fp32 for graph files; the rule "
                                                                           "is in the result's notes")
    optimizer: Literal[OPTIMIZERS] = "adamw"
    devices: int = Field(1, description="devices per entry, data parallel")
    hw_class: Literal[CLASSES] | None = Field(None, alias="class", description="only this hardware class")
    hardware: list[str] | None = Field(None, description="only these entries, by id or name")
    framework: Literal[FRAMEWORKS] | None = Field(None, description="entries that do not run it are listed as "
                                                                    "excluded")
    deadline: str | None = Field(None, description="finish within this time: 90d, 12h, 45m, 3600s")
    budget: float | None = Field(None, description="spend at most this many US dollars")
    prompt_tokens: int | None = Field(None, description="LLM serving (mode infer): prompt tokens per request")
    generate_tokens: int | None = Field(None, description="LLM serving (mode infer): generated tokens per request")
    network: str | None = Field(None, description="the network between nodes for every entry, e.g. ib-hdr-200, "
                                                  "efa-p5; default each vendor's reference node's")
    lora: int | None = Field(None, description="training: fine-tune LoRA adapters of this rank on a frozen base "
                                               "(a library transformer or a spec)")
    lora_targets: str | None = Field(None, description="with lora: matrices that get adapters, comma-separated, or "
                                                       "all-linear; default q_proj,k_proj,v_proj,o_proj")
    lora_base: str | None = Field(None, description="with lora: store the frozen base in fp8, int8 or nf4 (QLoRA); "
                                                    "default the compute precision")


class ProfileCache:
    """Profiles by their arguments, newest kept. One trace at a time (tracing uses process-wide
    torch state, and the machine's cores are better spent on one); a hit never waits for a trace."""

    def __init__(self, maxsize: int = PROFILE_CACHE_SIZE):
        self.maxsize = maxsize
        self.traces = 0
        self._done: OrderedDict[tuple, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._trace_lock = threading.Lock()

    def _hit(self, key: tuple):
        with self._lock:
            if key in self._done:
                self._done.move_to_end(key)
                return self._done[key]
        return None

    def get(self, key: tuple, make: Callable[[], Any]):
        found = self._hit(key)
        if found is not None:
            return found
        with self._trace_lock:
            found = self._hit(key)
            if found is not None:
                return found
            value = make()
            with self._lock:
                self.traces += 1
                self._done[key] = value
                while len(self._done) > self.maxsize:
                    self._done.popitem(last=False)
        return value


def finite(value):
    """`value` with every NaN or infinite float replaced by None (JSON has neither)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


class Dashboard:
    """What the routes share: the store's path, the catalog folders, uploads and cached profiles."""

    def __init__(self, db_path=None, catalog_dirs=(), trace: Callable[..., Any] = guard.run_limited):
        self.db_path = db_path
        self.catalog_dirs = tuple(catalog_dirs)
        self.profiles = ProfileCache()
        self.upload_dir = guard.upload_folder()
        self.uploads: dict[str, Path] = {}
        self.closing = threading.Event()
        self._trace = trace  # runs a trace: in a worker process with time and memory limits (web/guard.py)

    def close(self) -> None:
        self.closing.set()
        shutil.rmtree(self.upload_dir, ignore_errors=True)

    # --- models ---------------------------------------------------------------------------
    def source(self, model: str) -> tuple[str, str]:
        """(what chipfit's profile() takes, the name to show) for a library name (or alias) or an upload id."""
        from ..workload.library import resolve_model

        if model.startswith(UPLOAD_PREFIX):
            path = self.uploads.get(model)
            if path is None:
                raise ChipfitError(f"Upload {model!r} is not on this server (uploads last until it stops); upload the file again.")
            return str(path), path.parent.name.split("-", 1)[1]
        entry = resolve_model(model)
        return entry.name, entry.name

    def profile(self, job, batch: int):
        """chipfit.api.profiling.profile_job in a limited worker (web/guard.py), cached by what it depends on."""
        from ..api.profiling import profile_job

        key = (job.model, job.spec, job.serving, job.prompt, job.mode, batch, job.seq, job.precision, job.optimizer,
               job.lora, job.lora_targets, job.lora_base)
        return self.profiles.get(key, lambda: self._trace(profile_job, job, batch, stopping=self.closing.is_set))

    # --- compare --------------------------------------------------------------------------
    def job(self, req: CompareRequest):
        """The request as a chipfit Job, after the checks said in the dashboard's own field names."""
        from ..api.job import Constraints, Job, parse_duration

        if req.budget is not None and req.budget <= 0:
            raise ChipfitError(f"Budget {req.budget:g} USD is not positive; give a budget above 0 or leave it empty.")
        if req.spec is not None and req.model is not None:
            raise ChipfitError("The request gives both model and spec; give one of them.")
        if req.model is None and req.spec is None:
            raise ChipfitError("The request names no model; give a zoo name or upload id as model, or a spec.")
        if req.prompt_tokens is not None or req.generate_tokens is not None:
            self._check_serving(req)
        source, name = self.source(req.model) if req.model is not None else (None, None)
        return Job(model=source, spec=req.spec, label=name, mode=req.mode, batch=req.batch, seq=req.seq,
                   prompt=req.prompt_tokens, generate=req.generate_tokens, samples=req.samples, epochs=req.epochs,
                   tokens=req.tokens, precision=req.precision, optimizer=req.optimizer, lora=req.lora,
                   lora_targets=req.lora_targets, lora_base=req.lora_base, devices=req.devices,
                   hw_class=req.hw_class, hardware=tuple(req.hardware or ()), framework=req.framework,
                   network=req.network, local=False,
                   constraints=Constraints(deadline_s=parse_duration(req.deadline) if req.deadline else None,
                                           budget_usd=req.budget))

    def compare(self, req: CompareRequest) -> dict:
        """The Comparison dict for the request with the advice under its constraints (chipfit.api.advise at
        the request's device count) and how long each part took; serving rows also carry `serving` (time
        to first token, tokens/s, the largest batch that fits)."""
        from dataclasses import replace

        from ..api import advise

        job = self.job(req)
        t0 = time.perf_counter()
        advice = advise(replace(job, device_counts=(req.devices,)), self._catalog(), None, profiler=self.profile)
        comparison, c = advice.comparison, job.constraints
        result = comparison.to_dict()
        if job.serving:
            # The memory changes advise works out are a training or plain-inference model without
            # the KV cache; for serving the max batch column says what fits.
            advice.changes = []
            for row in result["estimates"]:
                if not row["excluded_reason"]:
                    row["serving"] = {"time_to_first_token_s": row["latency_s"], "tokens_per_s": row["throughput_per_s"],
                                      "max_batch": comparison.max_batch.get(row["hardware"])}
        result["constraints"] = {"deadline_s": c.deadline_s, "budget_usd": req.budget,
                                 "hw_class": req.hw_class, "framework": req.framework}
        result["advice"] = advice_summary(advice)
        result["timings_s"] = {"profile": comparison.timings_s["profile"], "predict": comparison.timings_s["predict"],
                               "advise": time.perf_counter() - t0 - sum(comparison.timings_s.values())}
        return finite(result)

    def _catalog(self):
        return load_catalog(self.catalog_dirs)

    def _check_serving(self, req: CompareRequest) -> None:
        """LLM serving: mode infer, both token counts, and a library transformer (not an upload)."""
        from ..workload import library

        if req.mode != "infer":
            raise ChipfitError("LLM serving (prompt_tokens, generate_tokens) is inference; set mode to infer.")
        for field_name in ("prompt_tokens", "generate_tokens"):
            value = getattr(req, field_name)
            if value is None or value < 1:
                given = "not given" if value is None else f"got {value}"
                raise ChipfitError(f"LLM serving needs {field_name} as a whole number of tokens above 0 "
                                   f"({given}); give both prompt_tokens and generate_tokens, or neither.")
        if req.spec is not None:
            return
        if req.model.startswith(UPLOAD_PREFIX):
            raise ChipfitError("LLM serving needs a decoder LLM from the zoo or a spec, not an uploaded file; "
                               "pick one, or leave prompt_tokens and generate_tokens empty.")
        try:
            library.transformer_spec(self.source(req.model)[1])
        except ChipfitError as exc:
            raise ChipfitError(f"LLM serving needs a decoder LLM; {exc}") from exc

    # --- uploads --------------------------------------------------------------------------
    def add_upload(self, filename: str, data: bytes) -> dict:
        """Keep an uploaded model file and profile it once (inference, batch 1) to check it is a model."""
        digest = hashlib.sha256(data).hexdigest()[:16]
        upload_id = UPLOAD_PREFIX + digest
        lowered = filename.lower()
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(filename).stem)[:64] or "model"
        folder = self.upload_dir / f"{digest}-{stem}"
        path = folder / (HF_CONFIG_NAME if lowered.endswith(HF_CONFIG_NAME) else stem + Path(lowered).suffix)
        folder.mkdir(exist_ok=True)
        path.write_bytes(data)
        try:
            from ..api.job import Job

            prof = self.profile(Job(model=str(path), mode="infer", precision="fp32"), 1)
        except Exception as exc:  # a user's file: any parser failure is their input's, said as such
            shutil.rmtree(folder, ignore_errors=True)
            text = str(exc).replace(str(path), filename)
            if isinstance(exc, ChipfitError):
                raise type(exc)(text) from exc  # a TraceLimit stays one (503)
            raise ChipfitError(
                f"File {filename} could not be read as a model ({type(exc).__name__}: {text}); "
                "upload a valid .onnx, .prototxt, config.json or .keras file."
            ) from exc
        self.uploads[upload_id] = path
        return finite({"model": upload_id, "name": stem, "filename": filename, "bytes": len(data),
                       "profile": prof.to_dict()})

    # --- results --------------------------------------------------------------------------
    def runs(self, kind: str | None) -> list[dict]:
        from ..store import Store

        with Store(self.db_path) as store:
            return finite([r.to_dict() for r in store.runs(kind=kind)])

    def run(self, run_id: int) -> dict:
        from ..store import Store

        with Store(self.db_path) as store:
            try:
                run = store.run(run_id)
            except ChipfitError as exc:
                raise HTTPException(status_code=404, detail=str(exc)) from None
            return finite(run.to_dict() | {"measurements": [m.to_dict() for m in store.measurements(run_id=run_id)]})


def advice_summary(advice) -> dict:
    """Advice.to_dict() without what the comparison beside it already holds: the workload, and the
    candidates' and winner's figures (candidates become (hardware, devices) pairs)."""
    d = advice.to_dict()
    del d["workload"]
    d["candidates"] = [{"hardware": e["hardware"], "devices": e["devices"]} for e in d["candidates"]]
    w = d["winner"]
    d["winner"] = {"hardware": w["hardware"], "devices": w["devices"], "name": w["name"]} if w else None
    return d


def _one_sentence(exc: RequestValidationError) -> str:
    """Pydantic's first complaint as one sentence naming the field."""
    errors = exc.errors()
    if not errors:
        return "The request is not valid; send a JSON body with the fields of POST /api/compare."
    first = errors[0]
    where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path"))
    more = f" ({len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    message = first.get("msg", "is not valid").rstrip(".")
    if not where:
        return f"The request body is not valid: {message}{more}; send a JSON object."
    return f"Field {where!r} is not valid: {message}{more}; see /openapi.json for the fields."


def create_app(db_path=None, catalog_dirs=(), hosts: frozenset[str] | None = None) -> FastAPI:
    """The dashboard app. `db_path`: the results store (default: chipfit.store.default_db_path());
    `catalog_dirs`: folders of the user's own catalog TOML files, as `chipfit --catalog`; `hosts`: the
    Host names it answers (guard.allowed_hosts; None answers any, for an app mounted elsewhere)."""
    board = Dashboard(db_path=db_path, catalog_dirs=catalog_dirs)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        board.close()

    app = FastAPI(title="chipfit", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Which hardware should a deep-learning job run on, and what will it cost?")
    app.state.board = board
    _guards(app, hosts)
    _routes(app, board)
    return app


def _guards(app: FastAPI, hosts: frozenset[str] | None) -> None:
    """Errors as one sentence, Host and Origin checks, the upload limit before the body is read, and the
    security headers."""

    @app.exception_handler(ChipfitError)
    async def _chipfit_error(request: Request, exc: ChipfitError):
        return _error(503 if isinstance(exc, guard.TraceLimit) else 400, str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        return _error(exc.status_code, str(exc.detail), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        return _error(422, _one_sentence(exc))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        return _error(500, unexpected(exc))

    @app.middleware("http")
    async def _guard(request: Request, call_next):
        if reason := guard.refusal(request.method, request.headers, hosts):
            return _error(403, reason)
        if request.url.path == "/api/upload":
            length = request.headers.get("content-length", "")
            if length.isdigit() and int(length) > MAX_UPLOAD_BYTES + MULTIPART_OVERHEAD_BYTES:
                return _error(413, _too_large())
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def _routes(app: FastAPI, board: Dashboard) -> None:
    """The page, and the JSON API under /api."""

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC_DIR / "index.html")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon():
        return Response(status_code=204)

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/api/meta", responses=errors())
    def meta():
        """What the form offers: classes, frameworks, precisions, optimizers and the upload limit."""
        return {"version": __version__, "classes": list(CLASSES), "frameworks": list(FRAMEWORKS),
                "precisions": list(PRECISION_CHOICES), "optimizers": list(OPTIMIZERS),
                "upload_max_bytes": MAX_UPLOAD_BYTES,
                "upload_types": [*UPLOAD_SUFFIXES, HF_CONFIG_NAME]}

    @app.get("/api/models", responses=errors())
    def models():
        """The model library: traced zoo models with their task, the others by kind (decoders as causal-lm)."""
        from ..workload.library import models as library_models
        from ..workload.zoo import ZOO

        tasks = {"decoder": "causal-lm", "moe": "causal-lm", "encoder": "masked-lm", "encoder-decoder": "seq2seq",
                 "vision": "image-classification"}

        def row(e) -> dict:
            z = ZOO.get(e.zoo or "")
            return e.to_dict() | {"task": z.task if z else tasks[e.kind],
                                  "default_seq_len": z.default_seq_len if z else e.default_seq_len,
                                  "description": z.description if z else e.source}

        return [row(e) for e in library_models()]

    @app.get("/api/hardware", responses=errors(400))
    def hardware(hw_class: Literal[CLASSES] | None = Query(None, alias="class"),
                 framework: Literal[FRAMEWORKS] | None = None):
        """Catalog entries, every figure with its unit and source; filter by class and framework."""
        catalog = load_catalog(board.catalog_dirs)
        return finite([catalog.to_dict(hw) for hw in catalog.select(hw_class=hw_class, framework=framework)])

    @app.post("/api/compare", responses=errors(400, 503))
    def compare(req: CompareRequest):
        """Rank the catalog for the job (the `chipfit compare --json` schema, plus constraints)."""
        return board.compare(req)

    @app.post("/api/upload", responses=errors(400, 413, 415, 503))
    async def upload(file: UploadFile):
        """A model file (.onnx, .prototxt, .keras or a Hugging Face config.json) to compare by its id."""
        filename = Path(file.filename or "").name
        lowered = filename.lower()
        if not (lowered.endswith(UPLOAD_SUFFIXES) or lowered.endswith(HF_CONFIG_NAME)):
            raise HTTPException(
                status_code=415,
                detail=f"File {filename or '(unnamed)'!r} is not a model file chipfit reads; upload "
                       f"{', '.join(UPLOAD_SUFFIXES)} or a Hugging Face {HF_CONFIG_NAME}.",
            )
        chunks, size = [], 0
        while chunk := await file.read(2**20):
            size += len(chunk)
            if size > MAX_UPLOAD_BYTES:
                raise HTTPException(status_code=413, detail=_too_large())
            chunks.append(chunk)
        if not size:
            raise HTTPException(status_code=400, detail=f"File {filename!r} is empty; upload the model file itself.")
        return await run_in_threadpool(board.add_upload, filename, b"".join(chunks))

    @app.get("/api/results", responses=errors(400))
    def results(kind: Literal[RUN_KINDS] | None = None):
        """Stored runs (benchmarks, measured steps), oldest first."""
        return board.runs(kind)

    @app.get("/api/results/{run_id}", responses=errors(400, 404))
    def result(run_id: int):
        """One stored run with its measurements."""
        return board.run(run_id)


class ErrorBody(BaseModel):
    """Every refusal the API gives: one sentence naming the input and what to do."""

    detail: str


_REASONS = {400: "the job or file is refused; `detail` says why", 403: "another host or site",
            404: "no such run", 413: "the upload is too large", 415: "not a model file chipfit reads",
            422: "a field of the wrong type or outside its set", 503: "the model's profile passed the time or "
                                                                     "memory limit per request"}


def errors(*codes: int) -> dict:
    """OpenAPI `responses` for the error codes a route gives, each with ErrorBody (403 and 422 on all)."""
    return {code: {"model": ErrorBody, "description": _REASONS[code]} for code in sorted({403, 422, *codes})}


def _error(status: int, text: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"detail": guard.public(text)}, headers=headers)


def _too_large() -> str:
    return (f"The file is larger than the {MAX_UPLOAD_BYTES // 2**20} MiB the dashboard accepts; "
            "profile it with the chipfit command line instead.")
