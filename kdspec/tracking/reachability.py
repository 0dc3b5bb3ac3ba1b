"""A tracking server that stops answering: bounded waits, and recognising the failure.

MLflow's client retries a failed HTTP request 7 times with exponential backoff (about 4
minutes per request; a study makes thousands), so a server that is gone for good hangs a study
for hours. kdspec lowers MLflow's defaults (``bound_http_retries``) unless the user set the
variables themselves, and recognises a request that failed for want of a server
(``is_unreachable``), so that the plan stops with one line instead of failing run after run.
"""

from __future__ import annotations

import os

#: kdspec's default for MLFLOW_HTTP_REQUEST_MAX_RETRIES (MLflow's own: 7, ~4 min a request).
DEFAULT_RETRIES = 3
#: Seconds of MLflow's exponential backoff unit and of one request's timeout: with 3 retries a
#: request to a server that is down fails after about 0 + 2 + 4 seconds (connection refused)
#: or 4 timeouts (a server that hangs).
BACKOFF_FACTOR = 1
REQUEST_TIMEOUT_S = 30


def bound_http_retries(retries: int = DEFAULT_RETRIES) -> None:
    """Set MLflow's HTTP retry, backoff and timeout variables to kdspec's bounds, keeping any
    the user set in the environment (``retries`` is what ``--tracking-retries`` gave)."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(retries))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", str(BACKOFF_FACTOR))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(REQUEST_TIMEOUT_S))


def is_unreachable(err: BaseException) -> bool:
    """Whether ``err`` (or what caused it) is a refused, reset or timed-out connection: the
    server is not there, as opposed to a request it answered with an error."""
    import requests

    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                                ConnectionError, TimeoutError)):
            return True
        current = current.__cause__ or current.__context__
    return False
