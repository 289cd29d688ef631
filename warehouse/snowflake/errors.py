"""Snowflake errors classified into the contract's errors.

Error classification (:func:`classify`, :func:`map_error`)
----------------------------------------------------------
Errors are classified by exception class, ``errno`` and ``sqlstate``, never by message text.
The first matching row wins:

=====  ====================================================  ============  =======================
order  condition                                             class         why / what to do
=====  ====================================================  ============  =======================
1      HTTP ``ForbiddenError`` (403), ``BadRequest`` (400),  terminal      wrong account URL or
       ``MethodNotAllowed`` (405)                                          not authorised; fix
                                                                           the settings
2      HTTP ``InternalServerError`` (500),                   transient     the service is busy or
       ``ServiceUnavailableError`` (503), ``BadGateway``,                  restarting; retry the
       ``GatewayTimeout``, ``RequestTimeout``,                             whole batch later
       ``TooManyRequests``, ``OtherHTTPRetryableError``
3      errno 390100, 390144, 394300-394306 (bad password,    terminal      credentials rejected;
       invalid/expired JWT)                                                fix user/password/key
4      errno 390112, 390114 (session / master token          transient     reconnect and retry
       expired)
5      errno 250001, 250002, 250003, 250005 (can't           transient     network; retry
       connect, connection closed, request failed)
6      errno 100035, 100038, 100046, 100069, 100072,         data          a value the column
       100074 (bad value / timestamp, numeric overflow,                    can't hold: dead-letter
       invalid JSON, NULL into NOT NULL, string too long)                  the events
7      errno 1003, 904, 2003, 2043, 2019, 1011, 9999         terminal      syntax, missing or
       (syntax, invalid identifier, missing object,                        unauthorised object,
       fakesnow's missing column, COPY shape, stage URL,                   bad COPY: a bug or a
       not implemented)                                                    missing grant
8      sqlstate class 22 (data exception) or 23              data          as row 6
       (constraint violation)
9      sqlstate class 08 (connection), 40 (transaction       transient     retry
       rollback), 57 (statement timeout / cancelled)
10     sqlstate class 28 (authorisation), 42 (syntax /       terminal      as rows 3 and 7
       access), 0A (not supported)
11     ``OperationalError``; Python ``ConnectionError`` /    transient     network
       ``TimeoutError``
12     ``IntegrityError``, ``DataError`` (connector)         data          as row 6
13     anything else                                         terminal      unknown: stop rather
                                                                           than retry forever
=====  ====================================================  ============  =======================

Measured on fakesnow: a cast or conversion error is 100035 / 22007; a Parquet decimal too
wide for its column in COPY is 100038 / 22018. On fakesnow an HTTP 500 also stands for
DuckDB-level failures (NOT NULL violation, invalid JSON, MERGE or CREATE TEMPORARY TABLE inside
a transaction, any statement after an error aborted the transaction). They are transient here,
because on real Snowflake an HTTP 500 is a service error; the consumer's bounded retry stops
them. On any error inside the apply transaction, ROLLBACK and retry the whole batch: that is
correct on both systems. For HTTP errors the connector adds 290000 to ``errno`` (fakesnow's 500
gives 580500), so those are classified by class.

"""

from __future__ import annotations

import snowflake.connector.errors as sf_errors

from warehouse.base import (
    DataError,
    TerminalWarehouseError,
    TransientWarehouseError,
    WarehouseError,
)

_HTTP_TERMINAL: tuple[type[Exception], ...] = (
    sf_errors.ForbiddenError,
    sf_errors.BadRequest,
    sf_errors.MethodNotAllowed,
)
_HTTP_TRANSIENT: tuple[type[Exception], ...] = (
    sf_errors.InternalServerError,
    sf_errors.ServiceUnavailableError,
    sf_errors.BadGatewayError,
    sf_errors.GatewayTimeoutError,
    sf_errors.RequestTimeoutError,
    sf_errors.TooManyRequests,
    sf_errors.OtherHTTPRetryableError,
)

AUTH_REJECTED = frozenset({390100, 390144, *range(394300, 394307)})
SESSION_EXPIRED = frozenset({390112, 390114})
CONNECTION = frozenset({250001, 250002, 250003, 250005})
BAD_VALUE = frozenset({100035, 100038, 100046, 100069, 100072, 100074})
STATEMENT = frozenset({1003, 904, 2003, 2043, 2019, 1011, 9999})

_DATA_SQLSTATE = ("22", "23")
_TRANSIENT_SQLSTATE = ("08", "40", "57")
_TERMINAL_SQLSTATE = ("28", "42", "0A")

_HINTS: dict[type[WarehouseError], str] = {
    TransientWarehouseError: (
        "Snowflake is unreachable or busy; the batch is rolled back and retried with backoff, "
        "offsets do not advance"
    ),
    DataError: (
        "a value in the batch does not fit its column; the offending events go to the "
        "dead-letter topic"
    ),
    TerminalWarehouseError: (
        "retrying will not help: check the account, credentials, grants and that the "
        "database, schema, stage and tables exist; the consumer stops"
    ),
}


def _errno(exc: BaseException) -> int | None:
    value = getattr(exc, "errno", None)
    return value if isinstance(value, int) and value > 0 else None


def _sqlstate(exc: BaseException) -> str | None:
    value = getattr(exc, "sqlstate", None)
    return value if isinstance(value, str) and len(value) == 5 else None


def classify(exc: BaseException) -> type[WarehouseError]:
    """Which warehouse error class an exception is (table in the module docstring)."""
    if isinstance(exc, WarehouseError):
        return type(exc)
    if isinstance(exc, _HTTP_TERMINAL):
        return TerminalWarehouseError
    if isinstance(exc, _HTTP_TRANSIENT):
        return TransientWarehouseError
    errno, sqlstate = _errno(exc), _sqlstate(exc)
    by_errno: list[tuple[frozenset[int], type[WarehouseError]]] = [
        (AUTH_REJECTED, TerminalWarehouseError),
        (SESSION_EXPIRED, TransientWarehouseError),
        (CONNECTION, TransientWarehouseError),
        (BAD_VALUE, DataError),
        (STATEMENT, TerminalWarehouseError),
    ]
    for codes, cls in by_errno:
        if errno in codes:
            return cls
    if sqlstate is not None:
        if sqlstate.startswith(_DATA_SQLSTATE):
            return DataError
        if sqlstate.startswith(_TRANSIENT_SQLSTATE):
            return TransientWarehouseError
        if sqlstate.startswith(_TERMINAL_SQLSTATE):
            return TerminalWarehouseError
    if isinstance(exc, sf_errors.OperationalError | ConnectionError | TimeoutError):
        return TransientWarehouseError
    if isinstance(exc, sf_errors.IntegrityError | sf_errors.DataError):
        return DataError
    return TerminalWarehouseError


def map_error(exc: BaseException, *, table: str | None) -> WarehouseError:
    """The warehouse error to raise (``from exc``) for an exception of a statement on
    ``table``; the message says what failed, its codes, and what happens next."""
    if isinstance(exc, WarehouseError):
        return exc
    cls = classify(exc)
    errno, sqlstate = _errno(exc), _sqlstate(exc)
    detail = str(getattr(exc, "raw_msg", None) or exc)[:500]
    message = (
        f"Snowflake error on table {table!r} ({type(exc).__name__} errno={errno} "
        f"sqlstate={sqlstate}): {detail}. {_HINTS[cls]}"
    )
    if cls is DataError:
        return DataError(message, table=table)
    return cls(message)
