"""A client's mistake is not a server error: BentoML logs every failed request as ``ERROR Exception on
/route`` with a traceback, including request validation (a field of the wrong type, pydantic) and 4xx
BentoML exceptions. This filter turns those records into one INFO line without the traceback; real server
errors (anything else, 5xx) keep their ERROR and traceback."""

from __future__ import annotations

import logging

_LOGGERS = ("bentoml._internal.server.http_app", "_bentoml_impl.server.app", "bentoml.serve")


def _client_error(exc: BaseException | None) -> bool:
    if exc is None:
        return False
    try:
        from pydantic import ValidationError

        if isinstance(exc, ValidationError):
            return True
    except ImportError:  # pragma: no cover
        pass
    from bentoml.exceptions import BentoMLException

    return isinstance(exc, BentoMLException) and 400 <= exc.error_code.value < 500


class ClientErrorFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and record.exc_info and _client_error(record.exc_info[1]):
            exc = record.exc_info[1]
            record.msg = "%s (client error: %s)" % (record.getMessage(), str(exc).splitlines()[0][:300])
            record.args = ()
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def install() -> None:
    f = ClientErrorFilter()
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(x, ClientErrorFilter) for x in logger.filters):
            logger.addFilter(f)
