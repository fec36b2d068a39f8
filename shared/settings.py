"""Settings every service shares, read from the environment (listed in the README)."""

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from redis.asyncio import Redis

from shared import clock
from shared.clock import MAX_OFFSET_SECONDS
from shared.durability import Durability
from shared.kafka_security import KafkaSecurity, Mechanism, Protocol
from shared.signing import KeyRing, SigningKey
from shared.state import connect_redis


class KafkaClientSettings(BaseSettings):
    """Where the broker is and how a client shows itself to it (contract version 3: the broker knows
    every client). Services read these as part of ServiceSettings; the simulator, the bench and the
    tests' own clients through `shared.kafka_security.from_env()`."""

    # hide_input_in_errors: a refusal that checks several fields at once would otherwise print every
    # input, the password too, into the log of a service that refuses to start.
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", case_sensitive=False, hide_input_in_errors=True)

    kafka_bootstrap_servers: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers, comma-separated.")
    kafka_security_protocol: Protocol = Field(
        "PLAINTEXT", description="How clients reach the broker: `PLAINTEXT`, `SSL` (TLS), `SASL_PLAINTEXT` or "
        "`SASL_SSL` (SASL login, over TLS for the latter). `make run` and the tests use `SSL` (stunnel in front "
        "of the local broker); with Apache Kafka use `SASL_SSL` (docs/operations.md, \"Broker security\").")
    kafka_sasl_mechanism: Mechanism = Field(
        "SCRAM-SHA-512", description="SASL mechanism with SASL_PLAINTEXT or SASL_SSL: `SCRAM-SHA-512`, "
        "`SCRAM-SHA-256`, or `PLAIN` (SASL_SSL only: PLAIN sends the password as it is).")
    kafka_sasl_username: str | None = Field(
        None, description="This client's principal (SASL user); required with SASL_PLAINTEXT and SASL_SSL, "
        "refused with the others. One per service (docs/operations.md lists their ACLs).")
    kafka_sasl_password: SecretStr | None = Field(
        None, description="The principal's password, from a secret (never logged or shown); required with "
        "KAFKA_SASL_USERNAME.")
    kafka_ssl_cafile: Path | None = Field(
        None, description="PEM file of the CA that signed the broker's certificate, with SSL or SASL_SSL; "
        "unset: the system's CAs. The broker's host name is always checked.")
    kafka_ssl_certfile: Path | None = Field(
        None, description="Mutual TLS: PEM file of this client's certificate, presented to the broker; needs "
        "KAFKA_SSL_KEYFILE.")
    kafka_ssl_keyfile: Path | None = Field(
        None, description="Mutual TLS: PEM file of the private key of KAFKA_SSL_CERTFILE.")

    @field_validator("kafka_sasl_username", "kafka_sasl_password", "kafka_ssl_cafile", "kafka_ssl_certfile",
                     "kafka_ssl_keyfile", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # `KAFKA_SSL_CAFILE=` in an environment means unset (a Path would read "" as ".").
        return None if value == "" else value

    @model_validator(mode="after")
    def _security_holds_together(self) -> "KafkaClientSettings":
        try:
            self.kafka_security()
        except ValidationError as exc:  # said once, naming the variables (and never the password)
            raise ValueError("; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())) from None
        return self

    def kafka_security(self) -> KafkaSecurity:
        return KafkaSecurity(protocol=self.kafka_security_protocol, sasl_mechanism=self.kafka_sasl_mechanism,
                             sasl_username=self.kafka_sasl_username, sasl_password=self.kafka_sasl_password,
                             ssl_cafile=self.kafka_ssl_cafile, ssl_certfile=self.kafka_ssl_certfile,
                             ssl_keyfile=self.kafka_ssl_keyfile)


class ClockSettings(BaseSettings):
    """Where the platform's clock stands (shared.clock): read by every service and by the simulator."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", case_sensitive=False)

    clock_offset_seconds: int = Field(
        0, ge=-MAX_OFFSET_SECONDS, le=MAX_OFFSET_SECONDS, description="For tests and drills only: seconds the "
        "platform's clock runs ahead of the host's (negative: behind), at most 400 days either way. Every China "
        "date and time the platform decides with (a charge's day, report days, limits' months, a binding's "
        "start) follows it; signing keys' validity, API tokens and Redis/Kafka timestamps stay on real time. "
        "Give every service of a platform, and the partners that talk to it, the same value. Production: 0.")

    def apply_clock(self) -> None:
        """Set the platform's clock; each service's app factory calls it once at start."""
        clock.set_offset(self.clock_offset_seconds)


class ServiceSettings(KafkaClientSettings, ClockSettings):
    """The base of each service's settings: where the broker and Redis are, and how to talk to them."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", case_sensitive=False)

    kafka_enable_idempotence: bool = Field(
        True, description="Idempotent producer; the local Tansu broker does not support it, so `false` there."
    )
    kafka_topic_partitions: int = Field(6, ge=1, description="Partitions of topics this service creates.")
    kafka_replication_factor: int = Field(1, ge=1, description="Replication factor of topics this service creates.")
    kafka_session_timeout_ms: int = Field(6000, description="Consumer group session timeout.")
    kafka_heartbeat_interval_ms: int = Field(500, description="Consumer group heartbeat interval.")
    kafka_fetch_max_wait_ms: int = Field(
        10, ge=0, le=1000, description="Longest a fetch waits for data on the subscriptions a partner waits on "
        "for an answer (settlement's his.charges and settlement.queries, binding's binding.commands, the "
        "gateway's reply topic). Apache Kafka answers a fetch as soon as data arrives, so there this only bounds "
        "an idle poll (production: 500, Kafka's default); the local Tansu broker always waits this long once "
        "a consumer has caught up, so there it is every hop's latency floor (10: the local stack's value).")
    kafka_background_fetch_max_wait_ms: int = Field(
        500, ge=0, le=5000, description="Longest a fetch waits for data on every other subscription "
        "(projections of bureau topics and binding events, notify's SMS work, the HIS ledger, the gateway's "
        "audit and revocations): no partner waits on them, so on the local Tansu broker a long wait spares the "
        "broker and the services a poll every few milliseconds while idle, at the price of up to this much "
        "delay before an SMS or a projection moves (production on Apache Kafka: 500, which delays nothing).")
    kafka_quiet_fetch_max_wait_ms: int = Field(
        500, ge=0, le=5000, description="The wait an answering subscription's fetch goes over to once it has "
        "fetched nothing for KAFKA_QUIET_AFTER_MS; the first fetch that brings a record puts it back on "
        "KAFKA_FETCH_MAX_WAIT_MS. On the local Tansu broker this spares the idle platform a poll every few "
        "milliseconds, at the price of up to this much delay for the first message after a quiet spell at each "
        "answering hop; under load nothing changes. No longer than KAFKA_FETCH_MAX_WAIT_MS: off. (Production on "
        "Apache Kafka: 500, which delays nothing.)")
    kafka_quiet_after_ms: int = Field(
        2000, ge=0, le=600_000, description="How long an answering subscription fetches nothing before its "
        "fetches go over to KAFKA_QUIET_FETCH_MAX_WAIT_MS.")
    kafka_linger_ms: int = Field(
        0, ge=0, description="How long the producer waits to fill a batch before sending. Outcomes are "
        "published a batch at a time already, so waiting only adds latency.")
    kafka_retention_days: int = Field(
        30, ge=1, description="Retention of the topics a service creates. Every idempotency record lives at "
        "least this long, so a message still on a topic is always answered the same way again.")
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis (or Valkey) URL holding the working state: "
                           "a single server, or (with REDIS_SENTINELS) only its database number is used.")
    redis_sentinels: str = Field(
        "", description="Sentinels watching the replicated primary, `host:port` comma-separated; set, the service "
        "finds the primary through them (REDIS_SENTINEL_SERVICE) and follows a failover by itself. Empty: "
        "REDIS_URL is the server.")
    redis_sentinel_service: str = Field(
        "fma", pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="The name the sentinels monitor the primary under.")
    redis_min_replicas: int = Field(
        0, ge=0, le=5, description="How many replicas must have a batch's writes (REDIS_REPLICA_DURABILITY says "
        "how) before anything of the batch is published, an SMS sent or its offsets committed. 0: none waited for "
        "(a single server); the replicated set-up (`make run`, compose) uses 1.")
    redis_replica_wait_ms: int = Field(
        1000, ge=10, le=60_000, description="How long a batch waits for the replicas; past it the batch is not "
        "acknowledged and is retried (from its records) until a replica has it.")
    redis_replica_durability: Literal["memory", "disk"] = Field(
        "memory", description="What REDIS_MIN_REPLICAS waits for: `memory`, the replicas have received the writes "
        "(WAIT; about a millisecond; they survive the primary's host dying, disk and all) or `disk`, they are on "
        "the replicas' disks too (WAITAOF; on Valkey 8.1 about a second a batch, since a replica reports its "
        "fsyncs once a second).")
    redis_go_on_without_replica: bool = Field(
        False, description="The operator's choice to go on acknowledging when no replica has the writes in time, "
        "logged loudly on every batch: a failover then loses what was acknowledged since.")
    log_level: str = Field("INFO", description="Python logging level.")
    log_format: Literal["text", "json"] = Field(
        "text", description="`text`: one readable line per record; `json`: one JSON object per line (time, level, "
        "logger, service, message, exc). Either way ID numbers and mobile numbers are masked.")
    log_file: Path | None = Field(
        None, description="Append log lines to this file instead of writing them to stderr.")
    http_host: str = Field("127.0.0.1", description="Address /healthz, /readyz and /metrics listen on.")
    http_port: int = Field(
        8080, ge=0, le=65535, description="Port of /healthz, /readyz and /metrics (the gateway: also the API). "
        "Defaults: gateway 8080, binding 8081, settlement 8082, notify 8083.")

    partner_keys_file: Path | None = Field(
        None, description="Contract version 3: the operator's trust anchor, a JSON file of the bureaus', the "
        "gateway's and the platform's public keys (`{\"keys\": [{key_id, owner, region, public_key, not_before, "
        "not_after}]}`). Required by every service; `make run` and the tests make one.")
    signing_key_id: str = Field(
        "", description="Contract version 3: the key id this process signs with (e.g. `settlement:k1`, "
        "`gateway:k1`); its public key must be in PARTNER_KEYS_FILE.")
    signing_key_file: Path | None = Field(
        None, description="A file holding the base64 of the 32 raw bytes of this process's Ed25519 private key "
        "(SIGNING_KEY_ID's). Keep it readable by the service alone.")

    def redis(self) -> Redis:
        """The service's Redis client (shared/state.py): REDIS_URL, or the primary through the sentinels."""
        return connect_redis(self.redis_url, self.redis_sentinels, self.redis_sentinel_service)

    def durability(self, key: str) -> Durability:
        """What a batch waits for before it is acknowledged (shared/durability.py); `key` is the
        service's own counter written before each wait."""
        return Durability(self.redis_min_replicas, self.redis_replica_wait_ms, self.redis_go_on_without_replica, key,
                          on_disk=self.redis_replica_durability == "disk")

    def partner_keys(self) -> KeyRing:
        """The trust anchor, read once at start; a service refuses to start without one."""
        if self.partner_keys_file is None:
            raise ValueError("PARTNER_KEYS_FILE is not set: the platform believes no partner without it")
        return KeyRing.load(self.partner_keys_file)

    def signing_key(self) -> SigningKey:
        if not self.signing_key_id or self.signing_key_file is None:
            raise ValueError("SIGNING_KEY_ID and SIGNING_KEY_FILE must be set: the platform signs what it tells partners")
        return SigningKey.load(self.signing_key_id, self.signing_key_file)

    def check_records_outlive_retention(self, **ttl_days: int) -> None:
        """Refuse to start when an idempotency record would expire before the messages it answers
        leave their topic: a redelivery after that would be decided afresh."""
        short = {name: days for name, days in ttl_days.items() if days < self.kafka_retention_days}
        if short:
            raise ValueError(f"record TTLs {short} (days) are shorter than KAFKA_RETENTION_DAYS="
                             f"{self.kafka_retention_days}")
