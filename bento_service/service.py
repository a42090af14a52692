"""The Bento: ``bentoml serve bento_service.service:PricingService`` (``make serve``).

Each worker process holds one ``Pricer`` (champion model, Feast store, prediction log) and
serves it twice: the FastAPI app mounted at / (HTTP, on ``RENTAL_SERVE_HTTP_PORT``) and a
grpcio server started on the worker's event loop (gRPC, on ``RENTAL_SERVE_GRPC_PORT``).
BentoML's /readyz follows ``__is_ready__``: a model is loaded and Redis answers. BentoML's
per-request metrics and tracing middlewares are off for quotes unless the settings ask for them
(``RENTAL_SERVE_HTTP_METRICS``, ``RENTAL_SERVE_TRACE_QUOTES``): together they cost a fifth of
a worker's quotes per second, and the predictions log already has every quote's latency.

Who may call, and over what (``auth.py``), is settled when this module is imported, before
BentoML starts a worker: a setting that cannot be served safely (tokens missing on a public
address, a certificate without its key) stops ``bentoml serve`` with the setting's name.
"""

from __future__ import annotations

import gc
import logging

import bentoml

from bento_service import http_api
from bento_service.auth import BearerAuth, serve_security
from bento_service.batching import QuoteBatcher
from bento_service.grpc_server import GrpcServer
from bento_service.pricing import Pricer
from rental.settings import get_settings

SETTINGS = get_settings()
SECURITY = serve_security(SETTINGS)
if SECURITY.warning:
    logging.getLogger(__name__).warning(SECURITY.warning)
TLS = {"ssl": SECURITY.tls.bentoml_ssl()} if SECURITY.tls else {}


@bentoml.service(
    name="rental_pricing",
    workers=SETTINGS.serve_workers,
    http={"host": SETTINGS.serve_host, "port": SETTINGS.serve_http_port},
    traffic={"timeout": 30},
    logging={"access": {"enabled": False}},  # every quote is logged to Kafka instead
    metrics={"enabled": SETTINGS.serve_http_metrics, "namespace": "bentoml_service"},
    tracing={"excluded_urls": None if SETTINGS.serve_trace_quotes else ["/predict", "/predict_batch"]},
    **TLS,
)
@bentoml.asgi_app(http_api.app, path="/")
class PricingService:
    def __init__(self) -> None:
        self.pricer = Pricer(SETTINGS)
        self.pricer.start()
        self.batcher = QuoteBatcher(self.pricer, SETTINGS.serve_merge_items)
        http_api.bind(self.pricer, self.batcher)
        self.grpc = GrpcServer(self.pricer, self.batcher, SETTINGS, SECURITY)

    @bentoml.on_startup
    async def start_grpc(self) -> None:
        await self.grpc.start()
        # Everything loaded so far (Feast, MLflow, the model, pandas) lives as long as the worker:
        # out of the collector's sight, a collection no longer walks it in the middle of a quote.
        gc.collect()
        gc.freeze()

    @bentoml.on_shutdown
    async def stop(self) -> None:
        await self.grpc.stop()
        self.pricer.close()

    def __is_ready__(self) -> bool:
        return self.pricer.ready()


if SECURITY.tokens:
    PricingService.add_asgi_middleware(BearerAuth, check=SECURITY.tokens)
    http_api.require_tokens()
