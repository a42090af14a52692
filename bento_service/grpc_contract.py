"""What a gRPC client gets back, whatever it sends: a status it can act on, never ``UNKNOWN``.

Two things grpcio does not do by itself. A request body that is not the method's message is a
client's error, ``INVALID_ARGUMENT`` naming the message, where grpcio answers ``UNKNOWN``. And an
error's details travel in a header that clients refuse past 8-16 KB (grpcio's client answers
``RESOURCE_EXHAUSTED`` instead of the error), while a batch of invalid items names a problem per
item: details are cut, at a problem's boundary, to fit.

grpcio decodes the body with the handler's ``request_deserializer`` before the servicer runs;
the generated ``add_PricingServiceServicer_to_server`` passes protobuf's ``FromString``, whose
``DecodeError`` (corrupt wire format, invalid UTF-8 in a string field) grpcio reports as an
unexpected exception. Here the deserializer returns the error instead, and the method aborts
with it. Everything else is what the generated function registers, read from the descriptor.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc
from google.protobuf.message import DecodeError

from bento_service.protos import pricing_pb2

SERVICE = pricing_pb2.DESCRIPTOR.services_by_name["PricingService"]
MAX_DETAILS_BYTES = 2_000  # UTF-8; percent-encoded on the wire, at most three times that


def bounded(details: str, limit: int = MAX_DETAILS_BYTES) -> str:
    """``details`` whole when it fits, else its first problems (``; `` apart) and how many are left out."""
    if len(details.encode()) <= limit:
        return details
    problems, kept, size = details.split("; "), [], 0
    for problem in problems:
        size += len(problem.encode()) + 2
        if size > limit - 40:
            break
        kept.append(problem)
    if not kept:  # one problem longer than the limit: its beginning
        return details.encode()[: limit - 40].decode("utf-8", "ignore") + " (cut)"
    return "; ".join(kept) + f"; and {len(problems) - len(kept)} more"


class _BoundedContext:
    """The servicer's context, with every abort's details made to fit a header."""

    def __init__(self, context: grpc.aio.ServicerContext):
        self._context = context

    def __getattr__(self, name: str):
        return getattr(self._context, name)

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata=()):
        await self._context.abort(code, bounded(details), trailing_metadata)


@dataclass(frozen=True)
class Undecodable:
    """A request body that is not the method's message, with protobuf's reason."""

    message: str
    reason: str


def _lenient(message_class) -> Callable[[bytes], object]:
    def decode(body: bytes):
        try:
            return message_class.FromString(body)
        except DecodeError as exc:
            return Undecodable(message_class.DESCRIPTOR.full_name, str(exc).rsplit(": ", 1)[-1])

    return decode


def _checked(method: Callable[..., Awaitable]) -> Callable[..., Awaitable]:
    async def handle(request, context):
        if isinstance(request, Undecodable):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"request: not a {request.message} message ({request.reason})"
            )
        return await method(request, _BoundedContext(context))

    return handle


def add_pricing_service(servicer, server: grpc.aio.Server) -> None:
    """``add_PricingServiceServicer_to_server``, with undecodable bodies answered INVALID_ARGUMENT
    and every error's details cut to fit a header."""
    handlers = {
        method.name: grpc.unary_unary_rpc_method_handler(
            _checked(getattr(servicer, method.name)),
            request_deserializer=_lenient(getattr(pricing_pb2, method.input_type.name)),
            response_serializer=getattr(pricing_pb2, method.output_type.name).SerializeToString,
        )
        for method in SERVICE.methods
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE.full_name, handlers),))
