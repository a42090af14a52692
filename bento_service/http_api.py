"""The HTTP API, a FastAPI app mounted in the Bento: POST /predict, POST /predict_batch, GET /health.

FastAPI (rather than ``@bentoml.api``) because the rental app needs exact status codes and
bodies: a bad field is a 400 naming it, an unknown item a 404, a missing dependency a 503, each
documented in the OpenAPI schema that the fuzz test reads; BentoML adds /livez, /readyz and
/metrics and merges both into its /docs.json. Handlers are ``async`` and price on the event
loop, through the ``QuoteBatcher`` that prices concurrent requests together: a quote is about a
millisecond of CPU, less than a hop to a thread pool.
"""

from __future__ import annotations

import json
import time

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from bento_service.auth import open_http_path
from bento_service.batching import QuoteBatcher
from bento_service.pricing import Pricer, QuoteInput, Unavailable
from bento_service.schemas import BATCH_LIMIT, BatchQuote, BatchRequest, Health, Problem, Quote, QuoteRequest, utc_today

app = FastAPI(
    title="rental pricing",
    version="1",
    description="Rental price per day for fashion rental items, from live features. gRPC: PricingService.",
)
_pricer: Pricer | None = None
_batcher: QuoteBatcher | None = None
ERRORS = {
    400: {"model": Problem, "description": "a field is missing or invalid (named in `fields`)"},
    503: {"model": Problem, "description": "the model or the online feature store is unavailable"},
}


def bind(pricer: Pricer, batcher: QuoteBatcher) -> None:
    """The process's pricer and its batcher, shared with the gRPC server."""
    global _pricer, _batcher
    _pricer, _batcher = pricer, batcher


def _problem(status: int, error: str, fields: list[str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "fields": fields or []}, status_code=status)


def _json(body: dict, status: int = 200) -> Response:
    return Response(json.dumps(body, default=_iso), status_code=status, media_type="application/json")


def _iso(value):
    return value.isoformat()


@app.exception_handler(HTTPException)
async def _refused(_: Request, exc: HTTPException) -> JSONResponse:
    """FastAPI's own refusals (a body that is not JSON or not UTF-8, an unknown path or method) in
    the API's one error shape, ``Problem``, with their headers (``Allow``)."""
    answer = _problem(exc.status_code, str(exc.detail), ["body"] if exc.status_code == 400 else [])
    answer.headers.update(exc.headers or {})
    return answer


@app.exception_handler(RequestValidationError)
async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
    fields, reasons = [], []
    for problem in exc.errors():
        loc = [str(p) for p in problem.get("loc", ()) if p != "body"]
        where = ".".join(loc) or "body"
        fields.append(where)
        reasons.append(f"{where}: {problem.get('msg', 'invalid')}")
    return _problem(400, "; ".join(reasons), list(dict.fromkeys(fields)))


def _inputs(requests: list[QuoteRequest]) -> list[QuoteInput]:
    return [QuoteInput(r.item_id, r.customer_id, r.rental_start, r.rental_days) for r in requests]


@app.post("/predict", response_model=Quote, responses=ERRORS | {404: {"model": Problem, "description": "unknown item"}})
async def predict(body: QuoteRequest) -> Response:
    """The price of one item for a rental."""
    started = time.perf_counter()
    try:
        priced = await _batcher.quote(_inputs([body]), "http", started)
    except Unavailable as exc:
        return _problem(503, str(exc))
    if priced.not_found:
        return _problem(404, f"item_id: no item {body.item_id!r} in the catalogue", ["item_id"])
    return _json(priced.quotes[0])


@app.post(
    "/predict_batch", response_model=BatchQuote, responses=ERRORS,
    description=f"Prices of up to {BATCH_LIMIT} items at once (more is a 400); unknown items are listed in `not_found`.",
)  # fmt: skip
async def predict_batch(body: BatchRequest) -> Response:
    started = time.perf_counter()
    try:
        priced = await _batcher.quote(_inputs(body.items), "http", started)
    except Unavailable as exc:
        return _problem(503, str(exc))
    return _json({"quotes": priced.quotes, "not_found": priced.not_found})


@app.get("/health", response_model=Health, responses={503: {"model": Health, "description": "cannot quote"}})
async def health() -> Response:
    """What the service depends on and how it is doing; 503 while it cannot quote."""
    report = _pricer.health()
    return _json(report, 503 if report["status"] == "unavailable" else 200)


_openapi_day = None  # the UTC day the cached schema was built for


def _openapi() -> dict:
    """FastAPI documents a 422 for every body; this API answers 400 instead. Rebuilt each UTC day:
    the schema states the day's window of rental starts (``schemas.start_pattern``)."""
    global _openapi_day
    if app.openapi_schema is None or _openapi_day != utc_today():
        app.openapi_schema, _openapi_day = None, utc_today()  # the day first: a build past midnight is redone
        schema = FastAPI.openapi(app)
        for path in schema["paths"].values():
            for operation in path.values():
                operation.get("responses", {}).pop("422", None)
        for name in ("HTTPValidationError", "ValidationError"):
            schema.get("components", {}).get("schemas", {}).pop(name, None)
        app.openapi_schema = schema
    return app.openapi_schema


app.openapi = _openapi


def require_tokens() -> None:
    """Declares the bearer scheme in the schema (when the service has tokens, so the schema says what
    the running service asks for): schema-driven clients then know to send the token, and a 401
    answer of every operation that needs it is documented."""
    build = app.openapi

    def secured() -> dict:
        schema = build()
        schema.setdefault("components", {}).setdefault("securitySchemes", {})["bearer"] = {
            "type": "http", "scheme": "bearer", "description": "one of RENTAL_SERVE_API_TOKENS",
        }  # fmt: skip
        unauthorized = {
            "description": "no valid API token (`authorization: Bearer <token>`)",
            "headers": {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "`Bearer`"}},
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for path, operations in schema["paths"].items():
            if open_http_path(path):
                continue
            for operation in operations.values():
                operation["security"] = [{"bearer": []}]
                operation.setdefault("responses", {})["401"] = unauthorized
        return schema

    app.openapi = secured
