"""Log lines of a gymctl process: `text` (default) or `json`, one object per line (time, level, instance, message, request id).

`--log-format json` (GYMCTL_LOG_FORMAT=json) is for log shippers (fluentd, Loki, a gelf or syslog
collector): every line of the process, uvicorn's included, is one JSON object. The request id is the
caller's `X-Request-ID` when it sends one, else one made here; it is kept only in json mode.
"""

from __future__ import annotations

import contextvars
import itertools
import logging
import time
from typing import Any

import orjson

LOG_FORMATS = ("text", "json")
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("gymctl_request_id", default=None)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, instance, logger, message, request_id, and exc when there is one."""

    def __init__(self, instance: str = "") -> None:
        super().__init__()
        self.instance = instance

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "instance": self.instance,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": request_id.get(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def json_line(instance: str, level: str, message: str, *, logger: str = "gymctl") -> str:
    """One log line in the json format, for what a process says outside `logging` (its `serving at` line)."""
    record = logging.makeLogRecord({"name": logger, "levelname": level.upper(), "msg": message})
    return JsonFormatter(instance).format(record)


def check_log_format(value: str) -> str:
    fmt = value.lower()
    if fmt not in LOG_FORMATS:
        raise ValueError(f"{value!r} is not a log format; choose one of: {', '.join(LOG_FORMATS)}")
    return fmt


def configure_logging(instance: str, level: str, log_format: str = "text") -> None:
    """The root handler of this process (and uvicorn's loggers) in `log_format`; what `gymctl serve` / `gymctl run` call once."""
    if check_log_format(log_format) == "text":
        logging.basicConfig(level=level.upper(), format=f"%(asctime)s {instance} %(levelname)s %(message)s" if instance else
                            "%(asctime)s %(name)s %(levelname)s %(message)s")
        return
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter(instance))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    import uvicorn.config

    # uvicorn configures its own loggers from this dict (its Config's default argument) each time a server is made:
    # changed in place, it routes them to the root's JSON handler instead.
    uvicorn.config.LOGGING_CONFIG.clear()
    uvicorn.config.LOGGING_CONFIG.update({"version": 1, "disable_existing_loggers": False, "loggers": {
        name: {"handlers": [], "propagate": True} for name in ("uvicorn", "uvicorn.error", "uvicorn.access")}})


class RequestIdMiddleware:
    """Pure ASGI: the request's id (its X-Request-ID, else `<instance>-<n>`) in a context variable for the JSON log lines."""

    def __init__(self, app: Any, instance: str) -> None:
        self.app = app
        self.prefix = instance
        self.counter = itertools.count(1)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = self.enter(scope["headers"])
        try:
            await self.app(scope, receive, send)
        finally:
            self.leave(token)

    def enter(self, headers: list[tuple[bytes, bytes]]) -> contextvars.Token[str | None]:
        """Set the request's id (also for calls dispatched in-process, gymctl.server.direct); `leave` with what it returns."""
        given = next((v for k, v in headers if k == b"x-request-id"), None)
        return request_id.set(given.decode("latin-1")[:128] if given else f"{self.prefix}-{next(self.counter)}")

    @staticmethod
    def leave(token: contextvars.Token[str | None]) -> None:
        request_id.reset(token)


def install_request_ids(app: Any, instance: str) -> None:
    """In json mode only (GYMCTL_LOG_FORMAT=json): request ids for the log lines; text mode adds nothing to the hot path."""
    from gymctl.server.settings import ServerSettings

    if ServerSettings.from_env().log_format == "json":
        app.add_middleware(RequestIdMiddleware, instance=instance)
