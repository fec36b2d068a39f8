"""How every Kafka client of the platform shows itself to the broker (contract.md, version 3: "The
broker knows every client"): TLS, with a client certificate for mutual TLS, and SASL/SCRAM.

One `KafkaSecurity` turns the settings (`KAFKA_SECURITY_PROTOCOL`, `KAFKA_SASL_*`,
`KAFKA_SSL_*`) into what each kind of client takes: aiokafka's keyword arguments
(`client_kwargs`), FastStream's `security=` object (`faststream`), and the environment of a child
process (`env`). Services build it from their settings (`ServiceSettings.kafka_security()`);
clients that are not services (the simulator, the bench, the tests' own clients) from the same
environment variables (`from_env()`).
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any, Literal

from aiokafka.helpers import create_ssl_context
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512
from pydantic import BaseModel, ConfigDict, SecretStr, model_validator

Protocol = Literal["PLAINTEXT", "SASL_PLAINTEXT", "SSL", "SASL_SSL"]
Mechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]

_FASTSTREAM_SASL = {"SCRAM-SHA-512": SASLScram512, "SCRAM-SHA-256": SASLScram256, "PLAIN": SASLPlaintext}
MASK = "**********"


class ClientKwargs(dict):
    """aiokafka's keyword arguments; printed, the password is masked (a dict of them is easy to log)."""

    def __repr__(self) -> str:
        return repr({k: MASK if k == "sasl_plain_password" else v for k, v in self.items()})

    __str__ = __repr__


class KafkaSecurity(BaseModel):
    """The broker's security for one client. Refuses combinations that cannot work or that would
    silently not do what the operator set (a certificate without TLS, a user without SASL)."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)  # inputs hold the password

    protocol: Protocol = "PLAINTEXT"
    sasl_mechanism: Mechanism = "SCRAM-SHA-512"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None

    @property
    def uses_tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    @model_validator(mode="after")
    def _consistent(self) -> KafkaSecurity:
        said = f"KAFKA_SECURITY_PROTOCOL={self.protocol}"
        password = self.sasl_password.get_secret_value() if self.sasl_password else ""
        if self.uses_sasl and not (self.sasl_username and password):
            raise ValueError(f"{said} needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD")
        if not self.uses_sasl and (self.sasl_username or password):
            raise ValueError(f"KAFKA_SASL_USERNAME/KAFKA_SASL_PASSWORD are set but {said} does not "
                             "authenticate with SASL (SASL_PLAINTEXT or SASL_SSL does)")
        if self.protocol == "SASL_PLAINTEXT" and self.sasl_mechanism == "PLAIN":
            raise ValueError("KAFKA_SASL_MECHANISM=PLAIN over SASL_PLAINTEXT sends the password in the clear: "
                             "use SASL_SSL, or a SCRAM mechanism")
        files = {"KAFKA_SSL_CAFILE": self.ssl_cafile, "KAFKA_SSL_CERTFILE": self.ssl_certfile,
                 "KAFKA_SSL_KEYFILE": self.ssl_keyfile}
        if not self.uses_tls and any(files.values()):
            raise ValueError(f"{', '.join(k for k, v in files.items() if v)} set but {said} does not use TLS "
                             "(SSL or SASL_SSL does)")
        if bool(self.ssl_certfile) != bool(self.ssl_keyfile):
            raise ValueError("mutual TLS needs both KAFKA_SSL_CERTFILE (the client certificate) and "
                             "KAFKA_SSL_KEYFILE (its private key)")
        return self

    def ssl_context(self) -> ssl.SSLContext | None:
        """The broker's certificate checked against KAFKA_SSL_CAFILE (else the system's CAs), host
        name included; the client certificate presented when one is set. None without TLS."""
        if not self.uses_tls:
            return None
        return create_ssl_context(cafile=self.ssl_cafile, certfile=self.ssl_certfile, keyfile=self.ssl_keyfile)

    def client_kwargs(self) -> ClientKwargs:
        """For AIOKafkaProducer, AIOKafkaConsumer and AIOKafkaAdminClient, beside bootstrap_servers."""
        kwargs = ClientKwargs(security_protocol=self.protocol)
        if self.uses_tls:
            kwargs["ssl_context"] = self.ssl_context()
        if self.uses_sasl:
            assert self.sasl_password is not None  # checked above
            kwargs.update(sasl_mechanism=self.sasl_mechanism, sasl_plain_username=self.sasl_username,
                          sasl_plain_password=self.sasl_password.get_secret_value())
        return kwargs

    def faststream(self) -> BaseSecurity | None:
        """FastStream's `KafkaBroker(security=...)`; None for PLAINTEXT (no security)."""
        if self.protocol == "PLAINTEXT":
            return None
        if self.protocol == "SSL":
            return BaseSecurity(ssl_context=self.ssl_context(), use_ssl=True)
        assert self.sasl_username is not None and self.sasl_password is not None  # checked above
        return _FASTSTREAM_SASL[self.sasl_mechanism](
            self.sasl_username, self.sasl_password.get_secret_value(),
            ssl_context=self.ssl_context(), use_ssl=self.uses_tls)

    def env(self) -> dict[str, str]:
        """The environment variables that say the same, for a child process (the password too:
        a child's environment only, never a log). Every variable is there, empty when unset, so
        that none inherited from the parent's environment adds to them."""
        found = {"KAFKA_SECURITY_PROTOCOL": self.protocol, "KAFKA_SASL_MECHANISM": self.sasl_mechanism,
                 "KAFKA_SASL_USERNAME": self.sasl_username,
                 "KAFKA_SASL_PASSWORD": self.sasl_password.get_secret_value() if self.sasl_password else None,
                 "KAFKA_SSL_CAFILE": self.ssl_cafile, "KAFKA_SSL_CERTFILE": self.ssl_certfile,
                 "KAFKA_SSL_KEYFILE": self.ssl_keyfile}
        return {k: str(v) if v else "" for k, v in found.items()}

    def describe(self) -> str:
        """One line for a log or a banner: never the password."""
        parts = [self.protocol]
        if self.uses_sasl:
            parts.append(f"{self.sasl_mechanism} as {self.sasl_username}")
        if self.uses_tls:
            parts.append(f"CA {self.ssl_cafile or 'the system CAs'}")
            if self.ssl_certfile:
                parts.append(f"client certificate {self.ssl_certfile}")
        return ", ".join(parts)


def from_env() -> KafkaSecurity:
    """For Kafka clients that are not services (simulator, bench, tests): the same environment
    variables a service reads, read the same way (shared/settings.py)."""
    from shared.settings import KafkaClientSettings  # settings build on this module

    return KafkaClientSettings().kafka_security()


def client_kwargs(bootstrap: str, security: KafkaSecurity | None = None, **extra: Any) -> dict[str, Any]:
    """Everything an aiokafka client needs to reach the broker: `bootstrap_servers` and the
    security (`from_env()` when not given), then the caller's own options."""
    return ClientKwargs(bootstrap_servers=bootstrap, **(security or from_env()).client_kwargs(), **extra)
