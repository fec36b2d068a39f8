"""Logging set-up for every service: one line per record, to stderr. Log lines carry masked
identifiers only (shared.identity.mask_*); no full ID number, name or phone is ever logged, and
nothing a partner sent is written raw (`shown`)."""

import json
import logging
import sys
from typing import Any


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiokafka").setLevel(logging.WARNING)


def shown(value: Any, limit: int = 64) -> str:
    """A partner-sent value fit for a log line: bounded, quoted, control characters escaped, so
    an id can neither forge a log line nor flood one."""
    text = value if isinstance(value, str) else repr(value)
    return json.dumps(text[:limit] + ("…" if len(text) > limit else ""), ensure_ascii=False)
