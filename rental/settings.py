"""One typed place for every setting, read from the environment with local defaults.

The same code then runs on a laptop, in CI, in docker compose and in the cloud: only the
environment changes. Paths are made absolute here because Feast's DuckDB store and the broker
resolve relative paths against whatever the working directory happens to be.
"""

from __future__ import annotations

import os
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[1]


def _default_cache_dir() -> Path:
    """Downloads that must survive a wipe of data_dir (the broker jars): the user's cache."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rental-pricing"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RENTAL_", extra="ignore", populate_by_name=True)

    data_dir: Path = Field(default=REPO_ROOT / "data", description="Parquet, registries, broker and Redis data.")
    cache_dir: Path = Field(default_factory=_default_cache_dir, description="Fetched jars; kept across data wipes.")

    # Kafka: when KAFKA_BOOTSTRAP_SERVERS is set, that broker is used and none is started.
    kafka_bootstrap_servers: str | None = Field(default=None, validation_alias="KAFKA_BOOTSTRAP_SERVERS")
    kafka_host: str = "127.0.0.1"
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    kafka_version: str = "4.1.1"
    kafka_scala_version: str = "2.13"
    kafka_heap: str = "-Xms256m -Xmx768m"
    kafka_auto_create_topics: bool = False
    kafka_start_timeout_s: float = 90.0
    kafka_stop_timeout_s: float = 30.0
    # Kafka security, given to every Kafka client the project makes (``rental.connections``). A
    # managed cluster needs SASL_SSL: a mechanism, a user and its password, and the CA to trust.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = Field(
        default=None, description="CA bundle the broker's certificate is checked against"
    )
    kafka_ssl_certfile: Path | None = Field(
        default=None, description="client certificate, for brokers that ask for one"
    )
    kafka_ssl_keyfile: Path | None = None
    kafka_ssl_check_hostname: bool = Field(
        default=True, description="the broker's certificate must name the host the client dialled"
    )
    java_bin: str = "java"
    mvn_bin: str = "mvn"

    # Redis: when REDIS_URL is set, that server is used and none is started.
    redis_url_env: str | None = Field(default=None, validation_alias="REDIS_URL", repr=False)  # may carry a password
    redis_host: str = "127.0.0.1"
    redis_port: int = 6379
    redis_server_bin: str = "redis-server"
    # TLS to Redis (a rediss:// REDIS_URL, which also carries an ACL user and password): the CA
    # to trust, and a client certificate when the server asks for one.
    redis_ssl_ca_file: Path | None = None
    redis_ssl_certfile: Path | None = None
    redis_ssl_keyfile: Path | None = None
    redis_start_timeout_s: float = 20.0
    redis_stop_timeout_s: float = 20.0

    # Topics and their layout. Keys are item ids, so one item's events stay in one partition.
    topic_bookings: str = "bookings"
    topic_bookings_dlq: str = "bookings.dlq"
    topic_predictions: str = "predictions"
    topic_retrain_requests: str = "retrain-requests"
    # Bookings re-keyed by customer and by category, so customer and category features are
    # each computed by the one consumer that owns the key (a repartition, as Kafka Streams does).
    topic_bookings_by_customer: str = "bookings.by-customer"
    topic_bookings_by_category: str = "bookings.by-category"
    # The live catalogue: the rental app lists and changes items on this compacted topic, keyed
    # by item id; the stages and the service learn new items from it without a restart.
    topic_items: str = "items"
    items_partitions: int = 3
    category_partitions: int = 3
    bookings_partitions: int = 6
    predictions_partitions: int = 6
    bookings_retention_ms: int = 30 * 24 * 3600 * 1000
    dlq_retention_ms: int = 90 * 24 * 3600 * 1000
    # A dead letter's bound: well under the producer's 1 MB request limit, so no rejected payload,
    # however large, makes a letter the stage cannot send (the original is then truncated).
    dlq_max_letter_bytes: int = Field(default=65_536, ge=16_384, le=900_000)
    predictions_retention_ms: int = 14 * 24 * 3600 * 1000
    retrain_retention_ms: int = 30 * 24 * 3600 * 1000

    # The feature consumer.
    consumer_group_prefix: str = "features"
    # Records a poll may return. While catching up, bigger polls mean fewer, larger Redis writes
    # (an entity booked twice in one poll is written once) and forwarded batches: 5,000 -> 50,000
    # took the three stages from about 12k to 18k events/s. A live stream's polls stay small.
    stream_max_poll_records: int = Field(default=50_000, ge=1)
    stream_poll_timeout_ms: int = 100
    checkpoint_every_s: float = Field(default=10.0, gt=0, description="state saved and offsets committed")
    checkpoint_max_rows: int = Field(
        default=300_000,
        ge=1,
        description="feature rows a stage holds for the offline store before it checkpoints early",
    )
    stream_background_nice: int = Field(
        default=5,
        ge=0,
        le=19,
        description="CPU niceness of the customer and category stages and of checkpoint writers",
    )
    stream_max_future_skew_s: float = Field(
        default=300.0,
        ge=0,
        description="an event dated further ahead of the wall clock (or stream_now) is a dead letter",
    )
    stream_redis_timeout_s: float = Field(
        default=10.0, gt=0, description="a stage's Redis call slower than this fails the stage (it resumes exactly)"
    )
    stream_kafka_timeout_s: float = Field(
        default=60.0, gt=0, description="a stage's producer flush or offset lookup slower than this fails the stage"
    )
    stream_session_timeout_s: float = Field(
        default=10.0,
        ge=6.0,
        le=300.0,
        description="a stage silent this long leaves its group and its partitions move to the other instances",
    )
    state_dir_env: Path | None = Field(
        default=None,
        validation_alias="RENTAL_STATE_DIR",
        description="the stages' window state: a directory every instance can read (a shared volume)",
    )
    stream_now: datetime | None = Field(
        default=None, description="Replays and tests: the 'now' windows decay to when the stream is idle."
    )
    history_dir_env: Path | None = Field(default=None, validation_alias="RENTAL_HISTORY_DIR")
    history_archive_group_id: str = Field(
        default="history-archive", description="`rental history archive`: the bookings topic's group it commits"
    )

    # MLflow: SQLite backend and local artifacts unless MLFLOW_TRACKING_URI names a server.
    mlflow_tracking_uri_env: str | None = Field(default=None, validation_alias="MLFLOW_TRACKING_URI", repr=False)
    registered_model_name: str = "rental-price"
    serving_alias: str = "champion"

    # Training: the split, the gate, XGBoost. Same data and these settings give the same model.
    train_experiment: str = "rental-price"
    train_validation_weeks: int = Field(default=4, ge=1, description="latest weeks held out to evaluate and gate")
    train_early_stopping_weeks: int = Field(default=2, ge=1, description="weeks before those that stop boosting")
    train_gate_margin: float = Field(default=0.10, ge=0, lt=1, description="MAE this far below the best baseline")
    train_engine: Literal["asof", "feast"] = Field(default="asof", description="how the point-in-time join runs")
    train_nthread: int = 2
    train_max_category_levels: int = Field(default=64, description="wider string features are left out")
    train_excluded_features: tuple[str, ...] = Field(
        default=(
            "colour",
            "size",
            "units",
            "preferred_category",
            "cancellations_30d",
            "customer_cancellations_365d",
            "start_season",
        ),
        description="features of the service the model does not read (no price signal; each costs boosting time)",
    )
    # Measured on a million bookings (tests.benchmarks.train_bench): depth 7 at rate 0.25 on half the
    # rows a round, 128 bins, stopped after 20 rounds without gain, reaches the accuracy of depth 8
    # at rate 0.1 in a fraction of the rounds, each round about half the cost.
    xgb_max_depth: int = 7
    xgb_learning_rate: float = 0.25
    xgb_num_boost_round: int = 2_000
    xgb_early_stopping_rounds: int = 20
    xgb_min_child_weight: float = 5.0
    xgb_subsample: float = 0.5
    xgb_colsample_bytree: float = 0.8
    xgb_max_bin: int = 128
    # Where boosting runs (training/distributed.py): this process, or XGBoost's Dask integration.
    train_fit_engine: Literal["local", "dask"] = Field(default="local", description="dask: boost on a Dask cluster")
    dask_scheduler_address: str | None = Field(
        default=None, description="an existing Dask scheduler (tcp://host:8786); empty: a local cluster for the run"
    )
    dask_workers: int = Field(default=2, ge=1, description="the local cluster's worker processes")
    dask_threads_per_worker: int = Field(default=1, ge=1, description="the local cluster's threads per worker")
    dask_connect_timeout_s: float = Field(
        default=10.0, gt=0, description="how long to wait for the scheduler and a first worker before failing"
    )

    # The pricing service (bento_service/): ports, limits, how it follows the champion alias.
    serve_host: str = Field(
        default="127.0.0.1", description="another address needs API tokens or serve_allow_unauthenticated"
    )
    serve_api_tokens: SecretStr | None = Field(
        default=None, description="comma-separated bearer tokens, several at once so keys can rotate"
    )
    serve_allow_unauthenticated: bool = Field(
        default=False, description="serve without tokens on a non-loopback address (said in the log)"
    )
    serve_tls_certfile: Path | None = Field(default=None, description="HTTPS and gRPC over TLS with this certificate")
    serve_tls_keyfile: Path | None = None
    serve_tls_client_ca: Path | None = Field(default=None, description="mutual TLS: clients must show a cert it signed")
    # The project's own clients of the service (`rental demo quotes`, the benchmarks, the readiness wait).
    serve_tls_server_ca: Path | None = Field(
        default=None, description="what the project's clients trust for the service's cert (default: the cert itself)"
    )
    serve_client_certfile: Path | None = Field(default=None, description="the project's clients' cert for mutual TLS")
    serve_client_keyfile: Path | None = None
    serve_http_port: int = Field(default=3000, ge=1, le=65535)
    serve_grpc_port: int = Field(default=50051, ge=1, le=65535)
    serve_workers: int = Field(default=2, ge=1, description="Bento worker processes (one a core), each HTTP and gRPC")
    serve_batch_limit: int = Field(default=100, ge=1, le=10_000, description="most items in one predict_batch")
    serve_merge_items: int = Field(
        default=256, ge=1, description="most items of concurrent requests priced in one call"
    )
    serve_http_metrics: bool = Field(
        default=False,
        description="BentoML's per-request Prometheus metrics on /metrics: about 0.5 ms of CPU a request "
        "(every quote's latency is in the predictions log either way)",
    )
    serve_trace_quotes: bool = Field(
        default=False,
        description="OpenTelemetry spans for /predict and /predict_batch; BentoML's tracing middleware "
        "costs about 0.5 ms a request even when it samples nothing, so quotes skip it unless this is set",
    )
    serve_alias_poll_s: float = Field(default=5.0, gt=0, description="how often the champion alias is checked")
    serve_redis_timeout_s: float = Field(default=0.25, gt=0, description="a slower Redis answer means unavailable")
    serve_fallback_items: int = Field(default=20_000, ge=0, description="last-known features kept for Redis outages")
    serve_log_queue: int = Field(default=50_000, ge=1, description="quotes waiting for Kafka before they are dropped")
    serve_log_unreachable_s: float = Field(
        default=10.0, gt=0, description="quotes waiting this long with none delivered: /health says kafka false"
    )

    # Monitoring (monitoring/): the prediction log joins each quote on ``predictions`` with its
    # outcome on ``bookings``. Times are event times: a quote's ``quoted_at``, a booking's ``event_time``.
    monitor_group_id: str = Field(default="monitor", description="the prediction log's consumer group")
    monitor_outcome_window_s: float = Field(
        default=900.0, gt=0, description="a booking this long after a quote (event time) is its outcome"
    )
    monitor_allowed_lateness_s: float = Field(
        default=60.0, ge=0, description="the watermark trails the newest event time by this much"
    )
    monitor_retention_s: float = Field(
        default=900.0,
        ge=0,
        description="how long past its window's close a quote is still joined exactly and its request id "
        "recognised; a quote later than that is refused into the rejected table",
    )
    monitor_idle_s: float = Field(
        default=30.0, gt=0, description="a topic silent this long stops holding the watermark back"
    )
    monitor_checkpoint_every_s: float = Field(
        default=30.0, gt=0, description="log parts written, state saved and offsets committed (one part a date)"
    )
    monitor_max_poll_records: int = Field(default=20_000, ge=1)
    monitor_dir_env: Path | None = Field(
        default=None,
        validation_alias="RENTAL_MONITOR_DIR",
        description="monitoring's files (default data_dir/monitoring)",
    )

    # Monitoring checks (monitoring/checks, alerts, views): windows of event time, each checked
    # against the champion's reference; failing windows become one retrain request.
    monitor_window_s: float = Field(default=86_400.0, gt=0, description="size of a check window (event time)")
    monitor_min_rows: int = Field(default=500, ge=1, description="quotes a window needs to be judged")
    monitor_min_outcomes: int = Field(default=200, ge=1, description="booked quotes quality checks need")
    monitor_min_category_rows: int = Field(default=50, ge=1, description="rows a category needs to be judged alone")
    monitor_reference_rows: int = Field(default=20_000, ge=100, description="rows of the reference logged with a model")
    monitor_reference: Literal["training", "live"] = Field(
        default="training",
        description="a champion's quotes are judged against its training sample logged in MLflow, or (live) its own "
        "first monitor_fallback_windows windows after promotion, for traffic unlike its training rows by design",
    )
    monitor_fallback_windows: int = Field(
        default=3, ge=1, description="without a logged reference: the first windows this many after promotion are it"
    )
    # Evidently's drift methods: for p-value methods (ks, chisquare, ...) drift is a score below the
    # threshold, for distances (wasserstein, jensenshannon, psi, ...) at or above it.
    monitor_num_drift_method: Literal[
        "wasserstein", "ks", "psi", "kl_div", "jensenshannon", "anderson", "cramer_von_mises", "hellinger",
        "mannw", "ed", "es", "t_test", "empirical_mmd"
    ] = Field(default="wasserstein", description="numerical features (normed Wasserstein: a distance in stds)")  # fmt: skip
    monitor_num_drift_threshold: float = Field(default=0.1, gt=0)
    monitor_cat_drift_method: Literal[
        "jensenshannon", "chisquare", "z", "psi", "kl_div", "TVD", "hellinger", "fisher_exact", "g_test"
    ] = Field(default="jensenshannon", description="categorical features")  # fmt: skip
    monitor_cat_drift_threshold: float = Field(default=0.1, gt=0)
    monitor_prediction_drift_method: Literal[
        "wasserstein", "ks", "psi", "kl_div", "jensenshannon", "anderson", "cramer_von_mises", "hellinger",
        "mannw", "ed", "es", "t_test", "empirical_mmd"
    ] = Field(default="wasserstein")  # fmt: skip
    monitor_prediction_drift_threshold: float = Field(default=0.1, gt=0)
    monitor_drift_share: float = Field(default=0.5, gt=0, le=1, description="drifted features that make a drift")
    monitor_drift_alarms: bool = Field(default=False, description="drift checks fail windows (else shown only)")
    monitor_max_bias: float = Field(default=0.12, gt=0, description="mean ln(paid/quoted) off the reference's by this")
    monitor_max_category_bias: float = Field(default=0.2, gt=0, description="the same per category")
    monitor_max_mape_ratio: float = Field(default=1.3, gt=1, description="MAPE above the reference's x this")
    monitor_max_booking_rate_change: float = Field(default=0.3, gt=0, description="relative to the first windows")
    monitor_max_missing_increase: float = Field(
        default=0.2, ge=0, description="a feature's missing share over the reference's"
    )
    monitor_max_degraded_share: float = Field(default=0.05, ge=0, le=1)
    monitor_max_cold_start_share: float = Field(default=0.5, ge=0, le=1)
    monitor_max_feature_age_s: float = Field(default=3_600.0, gt=0, description="p95 of quote time - features_as_of")
    monitor_max_dlq_rate: float = Field(default=0.01, ge=0, description="dead letters per booking")
    monitor_failing_windows: int = Field(default=2, ge=1, description="consecutive failing windows that raise an alarm")
    monitor_cooldown_windows: int = Field(default=7, ge=0, description="windows after a retrain request with no other")
    monitor_webhook_url: str | None = Field(
        default=None, description="people's webhook: the request JSON is POSTed here"
    )
    monitor_webhook_timeout_s: float = Field(default=5.0, gt=0)
    monitor_metrics_port: int = Field(
        default=9108, ge=1, le=65535, description="`rental monitor check --serve-metrics`"
    )
    monitor_metrics_host: str = Field(
        default="127.0.0.1", description="address the metrics are served on (0.0.0.0 in a container, for Prometheus)"
    )
    monitor_ui_port: int = Field(default=8008, ge=1, le=65535, description="`rental monitor ui`")

    # Orchestration (flows/): cron schedules (UTC) of `rental flows serve`, retries of the steps that
    # talk to services, and how retrain requests from monitoring become runs.
    flow_retrain_cron: str = Field(default="0 3 * * 1", description="scheduled retrain (Mondays 03:00)")
    flow_materialize_cron: str = Field(default="10 * * * *", description="incremental materialisation into Redis")
    flow_compact_cron: str = Field(default="20 0 * * *", description="compaction of the closed days")
    flow_monitor_cron: str = Field(default="30 * * * *", description="the monitoring checks' closed windows")
    flow_retries: int = Field(default=2, ge=0, description="retries of a step that talks to a service")
    flow_retry_delay_s: float = Field(default=30.0, ge=0, description="wait before such a retry")
    flow_retrain_cooldown_s: float = Field(
        default=3_600.0, ge=0, description="after a requested retrain starts, later requests start none this long"
    )
    flow_requests_group_id: str = Field(default="flows-retrain", description="the retrain requests' consumer group")
    flow_server_port: int = Field(default=4200, ge=1, le=65535, description="`rental flows server` (Prefect UI)")

    @field_validator("flow_retrain_cron", "flow_materialize_cron", "flow_compact_cron", "flow_monitor_cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        from cronsim import CronSim, CronSimError

        try:
            CronSim(value, datetime(2026, 1, 1))
        except CronSimError as exc:
            raise ValueError(f"not a cron expression ({exc}): {value!r}") from None
        return value

    # Simulator defaults.
    seed: int = 42
    currency: str = "GBP"

    @field_validator(
        "data_dir",
        "cache_dir",
        "state_dir_env",
        "kafka_ssl_cafile",
        "kafka_ssl_certfile",
        "kafka_ssl_keyfile",
        "redis_ssl_ca_file",
        "redis_ssl_certfile",
        "redis_ssl_keyfile",
        "serve_tls_certfile",
        "serve_tls_keyfile",
        "serve_tls_client_ca",
        "monitor_dir_env",
    )
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        return value if value is None else value.expanduser().resolve()

    # Derived values: computed from the fields above so they never disagree.
    @property
    def bootstrap_servers(self) -> str:
        return self.kafka_bootstrap_servers or f"{self.kafka_host}:{self.kafka_port}"

    @property
    def api_tokens(self) -> tuple[str, ...]:
        """The accepted bearer tokens (none: authentication is off)."""
        raw = self.serve_api_tokens.get_secret_value() if self.serve_api_tokens else ""
        return tuple(t.strip() for t in raw.split(",") if t.strip())

    @property
    def kafka_is_external(self) -> bool:
        return self.kafka_bootstrap_servers is not None

    @property
    def redis_url(self) -> str:
        return self.redis_url_env or f"redis://{self.redis_host}:{self.redis_port}/0"

    @property
    def redis_is_external(self) -> bool:
        return self.redis_url_env is not None

    @property
    def mlflow_tracking_uri(self) -> str:
        return self.mlflow_tracking_uri_env or f"sqlite:///{self.data_dir / 'mlflow' / 'mlflow.db'}"

    @property
    def services_dir(self) -> Path:
        """Runtime state of the local services: pid files, logs, broker storage."""
        return self.data_dir / "services"

    @property
    def kafka_dir(self) -> Path:
        """The local broker's config, KRaft storage, log and pid file."""
        return self.services_dir / "kafka"

    @property
    def kafka_lib_dir(self) -> Path:
        """Jars of the pinned broker release, fetched once by mvn and reused across data wipes."""
        return self.cache_dir / f"kafka_{self.kafka_scala_version}-{self.kafka_version}" / "lib"

    @property
    def redis_dir(self) -> Path:
        """The local Redis's config, data files, log and pid file."""
        return self.services_dir / "redis"

    @property
    def simulation_dir(self) -> Path:
        return self.data_dir / "simulation"

    @property
    def history_dir(self) -> Path:
        """Where the catalogue, customers and booking history are read from."""
        return self.history_dir_env or self.simulation_dir

    @property
    def state_dir(self) -> Path:
        """Checkpoints of the feature consumer's window state, per stage and partition: shared by
        every instance of a stage, wherever it runs (``RENTAL_STATE_DIR``)."""
        return self.state_dir_env or self.data_dir / "stream_state"

    @property
    def monitor_dir(self) -> Path:
        """Everything monitoring keeps: the prediction log (``monitor_log_dir``), reports, its UI."""
        return self.monitor_dir_env or self.data_dir / "monitoring"

    @property
    def monitor_log_dir(self) -> Path:
        """The prediction log: quotes, outcomes and rejected records as date-partitioned Parquet, and its state."""
        return self.monitor_dir / "log"

    @property
    def offline_dir(self) -> Path:
        """The Parquet offline store: one folder per feature view, partitioned by day."""
        return self.data_dir / "offline"

    # Object storage (rental/storage.py): the offline store, Feast's registry and MLflow's artifacts
    # under one s3:// root; credentials from the AWS chain (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).
    storage_uri: str | None = Field(
        default=None, description="s3://bucket/prefix for the offline store, Feast registry, MLflow artifacts"
    )
    s3_endpoint_url: str | None = Field(
        default=None, description="an S3-compatible server (MinIO, Ceph, moto); unset: AWS, or AWS_ENDPOINT_URL_S3"
    )

    @field_validator("storage_uri", "s3_endpoint_url")
    @classmethod
    def _storage(cls, value: str | None, info) -> str | None:
        from rental.storage import parse_endpoint, parse_storage_uri

        if value is None or not value.strip():
            return None
        return parse_storage_uri(value) if info.field_name == "storage_uri" else parse_endpoint(value)

    @property
    def offline_uri(self) -> str:
        """The offline store's root: ``offline_dir``, or ``<storage_uri>/offline``."""
        return f"{self.storage_uri}/offline" if self.storage_uri else str(self.offline_dir)

    @property
    def feast_registry_path(self) -> str:
        """Feast's registry file: in the data dir, or ``<storage_uri>/feast/registry.db``."""
        if self.storage_uri:
            return f"{self.storage_uri}/feast/registry.db"
        return str(self.data_dir / "feast" / "registry.db")

    @property
    def mlflow_artifact_location(self) -> str | None:
        """Where a new experiment's artifacts go: ``<storage_uri>/mlflow/artifacts``, or with the
        default SQLite backend the data dir. A tracking server decides itself (None): give it the
        bucket (``mlflow server --artifacts-destination s3://...``) and it proxies the artifacts."""
        server = self.mlflow_tracking_uri.startswith(("http://", "https://", "databricks"))
        if self.storage_uri and not server:
            return f"{self.storage_uri}/mlflow/artifacts"
        if self.mlflow_tracking_uri.startswith("sqlite:"):
            return (self.data_dir / "mlflow" / "artifacts").as_uri()
        return None

    def topic_specs(self) -> dict[str, tuple[int, int]]:
        """Topic name -> (partitions, retention in ms)."""
        return {
            self.topic_bookings: (self.bookings_partitions, self.bookings_retention_ms),
            self.topic_bookings_dlq: (1, self.dlq_retention_ms),
            self.topic_predictions: (self.predictions_partitions, self.predictions_retention_ms),
            self.topic_retrain_requests: (1, self.retrain_retention_ms),
            self.topic_bookings_by_customer: (self.bookings_partitions, self.bookings_retention_ms),
            self.topic_bookings_by_category: (self.category_partitions, self.bookings_retention_ms),
        }

    def compacted_topics(self) -> set[str]:
        """Topics that keep each key's latest value for ever (cleanup.policy=compact)."""
        return {self.topic_items}


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
