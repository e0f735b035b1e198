"""The gateway's log: how its records are written (`configure`: text or one JSON object a
line) and the access log, one line per request at INFO on `ai_api.access` (`AccessLog`, an
`outcomes` observer).

An access line holds what became of a request (method, path, status, API, route, the member
that answered, attempts, time to first token, duration, tokens, the error code), never a key,
a header or any of the conversation: the record it is made of holds none.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from typing import Any

import msgspec

from .store.ledger import Attempt, RequestRecord

ACCESS = "ai_api.access"
_TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_encode = msgspec.json.encode


def configure(level: str, form: str) -> None:
    """Log records at `level` and above to standard error, as `form` says (`text`, `json`)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if form == "json" else logging.Formatter(_TEXT))
    logging.basicConfig(level=level, handlers=[handler])


class JSONFormatter(logging.Formatter):
    """One JSON object a record: `time` (UTC, ISO 8601), `level`, `logger`, `message`, the
    access fields of an access line, and `exception` (its traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        at = time.gmtime(record.created)
        fields: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", at) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        access = getattr(record, "access", None)
        if isinstance(access, dict):
            fields.update(access)
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        return _encode(fields).decode()


class AccessLog:
    """Tells `ai_api.access` of each request as it ends (an `outcomes` observer)."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.log = logger or logging.getLogger(ACCESS)

    def __call__(self, record: RequestRecord, attempts: Sequence[Attempt]) -> None:
        if not self.log.isEnabledFor(logging.INFO):
            return
        member = f"{record.provider}/{record.model}" if record.provider else "-"
        ttft = "-" if record.ttft is None else f"{record.ttft:.3f}"
        self.log.info(
            "%s %s %d api=%s route=%s member=%s attempts=%d ttft=%s duration=%.3f"
            " tokens=%d+%d error=%s",
            record.method,
            record.path,
            record.status,
            record.api,
            record.route or "-",
            member,
            record.attempts,
            ttft,
            record.duration,
            record.prompt_tokens,
            record.completion_tokens,
            record.error or "-",
            extra={"access": access_fields(record)},
        )


def access_fields(record: RequestRecord) -> dict[str, Any]:
    """An access line's fields, as its JSON form holds them."""
    return {
        "method": record.method,
        "path": record.path,
        "status": record.status,
        "api": record.api,
        "route": record.route,
        "provider": record.provider,
        "account": record.account,
        "model": record.model,
        "attempts": record.attempts,
        "ttft": None if record.ttft is None else round(record.ttft, 4),
        "duration": round(record.duration, 4),
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens,
        "error": record.error,
        "request_id": record.request_id,
    }
