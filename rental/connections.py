"""How the project's clients reach Kafka and Redis, from settings, in one place; and masking.

Every Kafka client the project makes (stages, forwarders, producers, the prediction log, admin,
benchmarks, tests) is built with ``kafka_options(settings)``, and every redis-py client with
``redis_options(settings)``, so a managed Kafka that needs SASL_SSL or a Redis behind TLS with an
ACL user works everywhere at once, and a setting that cannot work (a SASL mechanism without a
password, a CA file that does not exist, TLS files for a ``redis://`` URL) fails at start with
the setting's name instead of as an authentication timeout somewhere later. ``REDIS_URL`` itself
carries the scheme (``rediss://`` for TLS), the ACL user and its URL-encoded password.

Credentials are printed nowhere: addresses go through ``mask_url``, free text through
``mask_text``, and the Kafka password handed to kafka-python hides itself from ``repr`` (the admin
client logs its whole configuration at DEBUG).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

from rental.settings import Settings

if TYPE_CHECKING:
    import redis

MASK = "***"


class ConnectionSettingsError(ValueError):
    """Settings that no client could connect with; the message names the setting to change."""


class _Hidden(str):
    """A credential that is still a ``str`` to the client library, but not in a ``repr``: a logged
    configuration dict shows ``'***'`` for it."""

    __slots__ = ()

    def __repr__(self) -> str:
        return repr(MASK)


# ---------------------------------------------------------------------------- Kafka

_SASL = ("SASL_PLAINTEXT", "SASL_SSL")
_TLS = ("SSL", "SASL_SSL")


def _existing(path: Path | None, env: str) -> str | None:
    if path is None:
        return None
    if not path.is_file():
        raise ConnectionSettingsError(f"{env}={path}: no such file")
    return str(path)


def kafka_options(settings: Settings, bootstrap_servers: str | None = None) -> dict[str, Any]:
    """The keyword arguments every kafka-python client gets: where the brokers are and how to
    authenticate (``bootstrap_servers`` overrides the settings' brokers, for a second cluster)."""
    s = settings
    protocol = s.kafka_security_protocol
    options: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers or s.bootstrap_servers,
        "security_protocol": protocol,
    }
    sasl_given = [
        env
        for env, value in (
            ("RENTAL_KAFKA_SASL_MECHANISM", s.kafka_sasl_mechanism),
            ("RENTAL_KAFKA_SASL_USERNAME", s.kafka_sasl_username),
            ("RENTAL_KAFKA_SASL_PASSWORD", s.kafka_sasl_password),
        )
        if value is not None
    ]
    if protocol in _SASL:
        if s.kafka_sasl_mechanism is None:
            raise ConnectionSettingsError(
                f"RENTAL_KAFKA_SECURITY_PROTOCOL={protocol} needs RENTAL_KAFKA_SASL_MECHANISM "
                "(PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)"
            )
        if not s.kafka_sasl_username or s.kafka_sasl_password is None:
            raise ConnectionSettingsError(
                f"RENTAL_KAFKA_SASL_MECHANISM={s.kafka_sasl_mechanism} needs RENTAL_KAFKA_SASL_USERNAME "
                "and RENTAL_KAFKA_SASL_PASSWORD"
            )
        options |= {
            "sasl_mechanism": s.kafka_sasl_mechanism,
            "sasl_plain_username": s.kafka_sasl_username,
            "sasl_plain_password": _Hidden(s.kafka_sasl_password.get_secret_value()),
        }
    elif sasl_given:
        raise ConnectionSettingsError(
            f"{', '.join(sasl_given)} set, but RENTAL_KAFKA_SECURITY_PROTOCOL={protocol} never sends them: "
            "set it to SASL_SSL (or SASL_PLAINTEXT)"
        )
    tls_files = {
        "RENTAL_KAFKA_SSL_CAFILE": s.kafka_ssl_cafile,
        "RENTAL_KAFKA_SSL_CERTFILE": s.kafka_ssl_certfile,
        "RENTAL_KAFKA_SSL_KEYFILE": s.kafka_ssl_keyfile,
    }
    if protocol in _TLS:
        options |= {
            "ssl_cafile": _existing(s.kafka_ssl_cafile, "RENTAL_KAFKA_SSL_CAFILE"),  # None: the system's CAs
            "ssl_certfile": _existing(s.kafka_ssl_certfile, "RENTAL_KAFKA_SSL_CERTFILE"),
            "ssl_keyfile": _existing(s.kafka_ssl_keyfile, "RENTAL_KAFKA_SSL_KEYFILE"),
            "ssl_check_hostname": s.kafka_ssl_check_hostname,
        }
    elif any(path is not None for path in tls_files.values()):
        given = ", ".join(env for env, path in tls_files.items() if path is not None)
        raise ConnectionSettingsError(
            f"{given} set, but RENTAL_KAFKA_SECURITY_PROTOCOL={protocol} does not use TLS: set it to SSL or SASL_SSL"
        )
    return options


@contextmanager
def kafka_failures() -> Iterator[list[BaseException]]:
    """The connection failures kafka-python logs while it retries and then reports only as a
    bootstrap timeout (a refused password, an untrusted certificate), collected so that an error
    can name the cause (``kafka_failure_note``)."""
    seen: list[BaseException] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if isinstance(record.args, tuple):
                seen.extend(arg for arg in record.args if isinstance(arg, BaseException))

    handler, logger = Collect(logging.WARNING), logging.getLogger("kafka")
    logger.addHandler(handler)
    try:
        yield seen
    finally:
        logger.removeHandler(handler)


def kafka_failure_note(settings: Settings, failures: list[BaseException]) -> str:
    """What to add to a "no broker answers" error: the refused credentials, or the last failure.

    A broker delays closing a connection whose authentication failed (100 ms by default), and
    kafka-python 3.0 then often sees only the close, never the refusal: with SASL, connections
    that were all closed by the broker are reported as the likely refusal they are.
    """
    s = settings
    causes = [exc for exc in failures if type(exc).__name__ != "KafkaTimeoutError"]
    if not causes:
        return ""
    check = "Check RENTAL_KAFKA_SASL_USERNAME, RENTAL_KAFKA_SASL_PASSWORD and RENTAL_KAFKA_SASL_MECHANISM"
    refused = [exc for exc in causes if "Authentication" in type(exc).__name__]
    if refused:
        note = f"; the broker refused user {s.kafka_sasl_username!r} ({s.kafka_sasl_mechanism}): {refused[-1]}. {check}"
    elif s.kafka_security_protocol in _SASL and all("disconnected" in str(exc) for exc in causes):
        note = (
            f"; the broker closed all {len(causes)} connections before they were ready, as it does when it "
            f"refuses user {s.kafka_sasl_username!r} ({s.kafka_sasl_mechanism}). {check}"
        )
    else:
        note = f"; last failure: {causes[-1]!r}"
    return mask_text(note, secrets_of(s))


# ---------------------------------------------------------------------------- Redis


def redis_tls_options(settings: Settings, url: str | None = None) -> dict[str, str]:
    """redis-py's TLS arguments for ``url`` (the settings' REDIS_URL by default): the CA to trust
    and a client certificate, for a ``rediss://`` URL only."""
    url = url or settings.redis_url
    scheme = urlsplit(url).scheme
    files = {
        "ssl_ca_certs": ("RENTAL_REDIS_SSL_CA_FILE", settings.redis_ssl_ca_file),
        "ssl_certfile": ("RENTAL_REDIS_SSL_CERTFILE", settings.redis_ssl_certfile),
        "ssl_keyfile": ("RENTAL_REDIS_SSL_KEYFILE", settings.redis_ssl_keyfile),
    }
    given = {arg: (env, path) for arg, (env, path) in files.items() if path is not None}
    if scheme == "rediss":
        return {arg: _existing(path, env) for arg, (env, path) in given.items()}
    if given:
        names = ", ".join(env for env, _ in given.values())
        raise ConnectionSettingsError(
            f"{names} set, but REDIS_URL ({mask_url(url)}) is not rediss://: TLS to Redis needs a rediss:// URL"
        )
    return {}


def redis_client(settings: Settings, url: str | None = None, **options: Any) -> redis.Redis:
    """A redis-py client for ``url`` (the settings' REDIS_URL by default) with the TLS settings;
    ``options`` are redis-py's own (timeouts)."""
    import redis  # only callers that talk to Redis pay for the import

    url = url or settings.redis_url
    return redis.Redis.from_url(url, **redis_tls_options(settings, url), **options)


def redis_credentials(url: str) -> tuple[str | None, str | None]:
    """The ACL user and password a Redis URL carries, URL-decoded (``%40`` is ``@``)."""
    parts = urlsplit(url)
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    return user, password


# ---------------------------------------------------------------------------- masking


def mask_url(address: str) -> str:
    """``address`` with the password of any ``scheme://user:password@host`` shown as ``***``.

    The password is everything between the first ``:`` of the user part and the last ``@``, so
    one with an unencoded ``@``, ``/`` or ``%`` in it is hidden whole. Broker lists and URLs
    without a password are returned as they are.
    """
    scheme, sep, rest = address.partition("://")
    if not sep or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.\-]*", scheme):
        return address
    userinfo, at, host = rest.rpartition("@")
    if not at:
        return address
    user, colon, _ = userinfo.partition(":")
    if not colon:
        return address  # a user name alone is no secret
    return f"{scheme}://{user}:{MASK}@{host}"


_URL_PASSWORD = re.compile(r"\b([A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*):[^\s@]+@")


def secrets_of(settings: Settings) -> list[str]:
    """Every credential the settings hold, as written and as a URL carries it."""
    found: list[str] = []
    if settings.kafka_sasl_password is not None:
        found.append(settings.kafka_sasl_password.get_secret_value())
    found += settings.api_tokens
    for url in (settings.redis_url, settings.mlflow_tracking_uri):
        password = urlsplit(url).password
        if password:
            found += [password, unquote(password)]
    return found


def mask_text(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` (an error, a log line) with every URL's password and each of ``secrets`` (and its
    URL-encoded form) replaced by ``***``."""
    text = _URL_PASSWORD.sub(rf"\1:{MASK}@", text)
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):  # longest first: no partial leftovers
        for form in {secret, quote(secret, safe="")}:
            text = text.replace(form, MASK)
    return text
