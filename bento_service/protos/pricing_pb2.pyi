from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PredictRequest(_message.Message):
    __slots__ = ("item_id", "customer_id", "rental_start", "rental_days")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    RENTAL_START_FIELD_NUMBER: _ClassVar[int]
    RENTAL_DAYS_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    customer_id: str
    rental_start: str
    rental_days: int
    def __init__(self, item_id: _Optional[str] = ..., customer_id: _Optional[str] = ..., rental_start: _Optional[str] = ..., rental_days: _Optional[int] = ...) -> None: ...

class Quote(_message.Message):
    __slots__ = ("item_id", "price_per_day", "total_price", "currency", "model_version", "features_as_of", "degraded", "cold_start", "request_id")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    PRICE_PER_DAY_FIELD_NUMBER: _ClassVar[int]
    TOTAL_PRICE_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    FEATURES_AS_OF_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    COLD_START_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    price_per_day: float
    total_price: float
    currency: str
    model_version: str
    features_as_of: str
    degraded: bool
    cold_start: bool
    request_id: str
    def __init__(self, item_id: _Optional[str] = ..., price_per_day: _Optional[float] = ..., total_price: _Optional[float] = ..., currency: _Optional[str] = ..., model_version: _Optional[str] = ..., features_as_of: _Optional[str] = ..., degraded: _Optional[bool] = ..., cold_start: _Optional[bool] = ..., request_id: _Optional[str] = ...) -> None: ...

class PredictBatchRequest(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[PredictRequest]
    def __init__(self, items: _Optional[_Iterable[_Union[PredictRequest, _Mapping]]] = ...) -> None: ...

class PredictBatchResponse(_message.Message):
    __slots__ = ("quotes", "not_found")
    QUOTES_FIELD_NUMBER: _ClassVar[int]
    NOT_FOUND_FIELD_NUMBER: _ClassVar[int]
    quotes: _containers.RepeatedCompositeFieldContainer[Quote]
    not_found: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, quotes: _Optional[_Iterable[_Union[Quote, _Mapping]]] = ..., not_found: _Optional[_Iterable[str]] = ...) -> None: ...
