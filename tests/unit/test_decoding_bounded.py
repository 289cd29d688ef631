"""The decoder does bounded work on any input (issue 17).

``decode_message`` runs on bytes that anyone who can write to a topic controls, and a field's
schema parameters are among them. Whatever they say, one message must cost a bounded amount of
work and end in a result or a :class:`DecodeError`: a decoder that computes ``10**precision``
from a ``__debezium.source.column.length`` of 2147483647 (PostgreSQL reports that length for
``money``) never returns, and as the big-int arithmetic holds the GIL no signal handler and no
other thread runs meanwhile: ``cdc run`` ignores SIGTERM until it is SIGKILLed.

So every decode here runs in a worker process, with a hard timeout, so that a decode that never
returns *fails* the test instead of hanging the suite. Times are measured in the worker with
``time.perf_counter`` around the one call. The limit (:data:`LIMIT_S`, 50 ms) is a bound on
*work*, not a performance target: a message of a few KB decodes in well under a millisecond,
so 50 ms leaves room for a loaded 2-core machine while anything that grows with a parameter's
value (``10**2147483647``, a 2**31-digit string, ...) is far beyond it. A slow measure is
repeated (each time with a cold plan cache) and the fastest counts, so contention alone does
not fail the test.
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import select
import struct
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, note, settings
from hypothesis import strategies as st

import cdc
from cdc.decoding.values import LOGICAL_TYPES, PRIMITIVE_TYPES

LIMIT_S = 0.05
"""Most one decode may take (the fastest of :data:`ATTEMPTS` cold runs); see the module doc."""
ATTEMPTS = 3
HANG_S = 5.0
"""A decode still running after this long never ends: the worker is killed, the test fails."""

MIN_EXPONENT = -16383
"""PostgreSQL numeric: at most 16383 digits after the decimal point ..."""
MAX_ADJUSTED = 131071
"""... and 131072 before it. A decoded Decimal outside these bounds came from no real column
(a scale of 2**31-1 gives ``1E-2147483647``, whose fixed-point text is 2 GB)."""

TOPIC = "cdc.public.t"
DECIMAL = "org.apache.kafka.connect.data.Decimal"
VSD = "io.debezium.data.VariableScaleDecimal"

CHILD_ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(
        [str(Path(cdc.__file__).parents[1]), *filter(None, [os.environ.get("PYTHONPATH")])]
    ),
}
"""Child processes import the very ``cdc`` this process imported (they run with ``-P``)."""

Outcome = tuple[str, str, list[Any], list[Any], str]
"""(status, message, decoded Decimals, column types, type of the exception behind a
DecodeError): status is "ok", "skip", "DecodeError", "hung", "no hint" (the schema'd message
did not decode, so there is no hint) or the name of any other exception raised."""

# --------------------------------------------------------------------------------------------
# the worker: decodes in another process, so a decode that never returns can be killed

WORKER = textwrap.dedent(
    """
    import decimal, pickle, struct, sys, time
    from cdc.decoding import DecodeError, decode_message
    from cdc.model import ChangeEvent

    def decimals(value, path, out):
        if isinstance(value, decimal.Decimal):
            sign, digits, exponent = value.as_tuple()
            out.append((path, exponent if isinstance(exponent, int) else str(exponent),
                        len(digits), value.adjusted() if value.is_finite() else None))
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                decimals(item, f"{path}[{i}]", out)

    def outcome(result):
        if not isinstance(result, ChangeEvent):
            return ("skip", repr(result), [], [], "")
        found = []
        for section in ("key", "before", "after"):
            row = getattr(result, section)
            for name, value in (row or {}).items():
                decimals(value, f"{section}.{name}", found)
        for column in result.schema.columns:
            decimals(column.default, f"default.{column.name}", found)
        types = [(c.name, c.type.kind.value, c.type.precision, c.type.scale)
                 for c in result.schema.columns]
        return ("ok", "", found, types, "")

    def one(key, value, hint):
        try:
            result = decode_message(key, value, topic=sys.argv[1], partition=0, offset=0,
                                    schema_hint=hint)
        except DecodeError as exc:
            cause = exc.__cause__
            return ("DecodeError", str(exc)[:300], [], [],
                    "" if cause is None else type(cause).__qualname__), None
        except BaseException as exc:
            return (type(exc).__qualname__, str(exc)[:300], [], [], ""), None
        return outcome(result), result

    def main():
        stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
        stdout.write(b"ready\\n")
        stdout.flush()
        while True:
            head = stdin.read(4)
            if len(head) < 4:
                return
            key, value, hinted = pickle.loads(stdin.read(struct.unpack(">I", head)[0]))
            hint = None
            if hinted is not None:
                # schemaless: the row typed by the schema the schema'd message gave
                shaped, event = one(key, hinted, None)
                if event is None or not isinstance(event, ChangeEvent):
                    hint = False
                else:
                    hint = event.schema
            started = time.perf_counter()
            if hint is False:
                result = ("no hint", "", [], [], "")
            else:
                result, _ = one(key, value, hint)
            elapsed = time.perf_counter() - started
            data = pickle.dumps((result, elapsed))
            stdout.write(struct.pack(">I", len(data)) + data)
            stdout.flush()

    main()
    """
)


class Worker:
    """A ``python`` process that decodes messages sent to it (see :data:`WORKER`)."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    def _start(self) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-P", "-c", WORKER, TOPIC],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=CHILD_ENV,
        )
        assert proc.stdout is not None
        line = self._read(proc, 6, 60)
        assert line == b"ready\n", line
        self.proc = proc
        return proc

    @staticmethod
    def _read(proc: subprocess.Popen[bytes], n: int, timeout: float) -> bytes | None:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        data = b""
        while len(data) < n:
            ready, _, _ = select.select([fd], [], [], timeout)
            if not ready:
                return None
            chunk = os.read(fd, n - len(data))
            if not chunk:
                raise AssertionError(f"decode worker died (exit {proc.wait()})")
            data += chunk
        return data

    def decode(
        self, key: bytes | None, value: bytes, hinted: bytes | None = None
    ) -> tuple[Outcome, float]:
        """(outcome, seconds) of one ``decode_message``; outcome ``("hung", ...)`` when it
        did not return within :data:`HANG_S` (the worker is then killed).

        ``hinted``: decode ``value`` schemaless, with the schema of the event ``hinted`` (the
        same row with its schema) decodes to as ``schema_hint``. Only the second call is
        timed."""
        proc = self.proc or self._start()
        assert proc.stdin is not None
        data = pickle.dumps((key, value, hinted))
        proc.stdin.write(struct.pack(">I", len(data)) + data)
        proc.stdin.flush()
        head = self._read(proc, 4, HANG_S)
        if head is None:
            self.close()
            self.restarts += 1
            return ("hung", f"no result within {HANG_S} s", [], [], ""), HANG_S
        body = self._read(proc, struct.unpack(">I", head)[0], HANG_S)
        assert body is not None
        result: tuple[Outcome, float] = pickle.loads(body)
        return result

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


@pytest.fixture(scope="module")
def worker() -> Iterator[Worker]:
    w = Worker()
    try:
        yield w
    finally:
        w.close()


# --------------------------------------------------------------------------------------------
# messages


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unscaled_b64(unscaled: int) -> str:
    """Kafka Connect's Decimal bytes: Java BigInteger.toByteArray(), base64."""
    return b64(unscaled.to_bytes((unscaled.bit_length() + 8) // 8, "big", signed=True))


def dumps(doc: Any) -> bytes:
    """Compact JSON (the converter's layout); the stdlib, for ints beyond 64 bits."""
    return json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()


SOURCE = {
    "version": "3.6.3.Final",
    "connector": "postgresql",
    "name": "cdc",
    "ts_ms": 1795594579749,
    "ts_us": 1795594579749473,
    "snapshot": "false",
    "db": "postgres",
    "sequence": '["24083000","24083344"]',
    "schema": "public",
    "table": "t",
    "txId": 757,
    "lsn": 24083344,
}


def envelope(
    fields: list[Any],
    after: dict[str, Any] | None,
    *,
    before: dict[str, Any] | None = None,
    op: str = "c",
    nonce: str = "",
) -> bytes:
    """A Debezium envelope (``schemas.enable=true``) of one table whose row struct has
    ``fields``. ``nonce`` goes into the schema's ``doc``: a new one defeats the plan cache."""
    row = {"type": "struct", "fields": fields, "optional": True, "name": "cdc.public.t.Value"}
    schema = {
        "type": "struct",
        "fields": [
            {**row, "field": "before"},
            {**row, "field": "after"},
            {"type": "struct", "fields": [], "optional": False, "field": "source"},
            {"type": "string", "optional": False, "field": "op"},
        ],
        "optional": False,
        "name": "cdc.public.t.Envelope",
        "doc": nonce,
    }
    payload = {"before": before, "after": after, "source": SOURCE, "op": op}
    return dumps({"schema": schema, "payload": payload})


def schemaless(after: dict[str, Any] | None, before: dict[str, Any] | None = None) -> bytes:
    return dumps({"before": before, "after": after, "source": SOURCE, "op": "c"})


def key_message(fields: list[Any], payload: dict[str, Any], nonce: str = "") -> bytes:
    schema = {"type": "struct", "fields": fields, "name": "cdc.public.t.Key", "doc": nonce}
    return dumps({"schema": schema, "payload": payload})


def check_decimals(found: list[Any]) -> None:
    """Every decoded Decimal is NaN, +-Infinity (numeric has them) or of bounded size."""
    for path, exponent, digits, adjusted in found:
        if exponent in ("n", "F"):
            continue
        assert isinstance(exponent, int), f"{path}: a signalling NaN Decimal"
        assert exponent >= MIN_EXPONENT, f"{path}: Decimal exponent {exponent} is unbounded"
        assert adjusted <= MAX_ADJUSTED, f"{path}: Decimal of magnitude 1E{adjusted}"
        assert digits <= MAX_ADJUSTED + 1 - MIN_EXPONENT, f"{path}: Decimal of {digits} digits"


# --------------------------------------------------------------------------------------------
# A: the exact schemas that hung, each decoded in a fresh process with a 10 s timeout

MONEY = {
    "type": "bytes",
    "optional": True,
    "name": DECIMAL,
    "version": 1,
    "parameters": {
        "scale": "2",
        "__debezium.source.column.type": "MONEY",
        "__debezium.source.column.length": "2147483647",
        "__debezium.source.column.name": "v",
    },
    "field": "v",
}
ID = {"type": "int32", "optional": False, "field": "id"}

ONE_SHOT = textwrap.dedent(
    """
    import pickle, sys
    from cdc.decoding import DecodeError, decode_message
    key, value = pickle.loads(sys.stdin.buffer.read())
    try:
        event = decode_message(key, value, topic=sys.argv[1], partition=0, offset=0)
    except DecodeError as exc:
        event = exc
    sys.stdout.buffer.write(pickle.dumps(event))
    """
)


def decode_in_subprocess(key: bytes | None, value: bytes, timeout: float = 10) -> Any:
    """``decode_message`` in a fresh process: its event (or DecodeError); fails the test,
    instead of hanging it, if the decode does not end within ``timeout`` seconds (a big-int
    computation holds the GIL: nothing in the same process could interrupt it)."""
    try:
        done = subprocess.run(
            [sys.executable, "-P", "-c", ONE_SHOT, TOPIC],
            input=pickle.dumps((key, value)),
            capture_output=True,
            timeout=timeout,
            env=CHILD_ENV,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"decode_message did not return within {timeout} s (it hangs)")
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    return pickle.loads(done.stdout)


def test_money_column_without_precision_decodes_promptly() -> None:
    """The schema Debezium gives a ``money`` column (decimal.handling.mode=precise): scale 2,
    no ``connect.decimal.precision``, a source length of 2147483647. Its values decode to
    exact Decimals, and the column's declared precision is not 2147483647 digits."""
    key = key_message([ID], {"id": 1})
    value = envelope([ID, MONEY], {"id": 1, "v": unscaled_b64(-1234567)})
    event = decode_in_subprocess(key, value)
    assert not isinstance(event, Exception), event
    assert event.after == {"id": 1, "v": Decimal("-12345.67")}
    (column,) = [c for c in event.schema.columns if c.name == "v"]
    assert column.type.scale == 2
    assert column.type.precision is None or 1 <= column.type.precision <= 1000, column.type


BIG = "2147483647"
PATHOLOGICAL: dict[str, dict[str, Any]] = {
    "money in the key": {"key": True, "schema": {**MONEY, "optional": False}},
    "money[]": {"schema": {"type": "array", "optional": True, "items": MONEY, "field": "v"}},
    "precision 2**31-1": {
        "schema": {**MONEY, "parameters": {"scale": "2", "connect.decimal.precision": BIG}}
    },
    "length 10**30": {
        "schema": {**MONEY, "parameters": {"__debezium.source.column.length": str(10**30)}}
    },
    "precision as a JSON number 1e300": {
        "schema": {**MONEY, "parameters": {"scale": "0", "connect.decimal.precision": 1e300}}
    },
    "numeric(2**31-1, 2**31-1)": {
        "schema": {
            **MONEY,
            "parameters": {
                "scale": BIG,
                "__debezium.source.column.type": "NUMERIC",
                "__debezium.source.column.length": BIG,
                "__debezium.source.column.scale": BIG,
            },
        }
    },
}


@pytest.mark.parametrize("case", list(PATHOLOGICAL), ids=list(PATHOLOGICAL))
def test_pathological_decimal_schemas_end_within_10_s(case: str) -> None:
    """Relatives of the money schema: each decodes (or raises DecodeError) in a fresh process
    within 10 s, and any Decimal it yields has a bounded exponent."""
    spec = PATHOLOGICAL[case]
    field = spec.get("schema", MONEY)
    value_of: Any = unscaled_b64(12345)
    if field.get("type") == "array":
        value_of = [value_of, None]
        field = {**field, "items": {**field["items"], "optional": True}}
    raw = envelope([ID, field], {"id": 1, "v": value_of})
    key = key_message([ID, field], {"id": 1, "v": value_of}) if spec.get("key") else None
    event = decode_in_subprocess(key, raw)
    if isinstance(event, Exception):
        return  # a DecodeError is a fine outcome for these
    values = [event.after.get("v")]
    if isinstance(values[0], list):
        values = values[0]
    for v in values:
        if v is not None:
            assert isinstance(v, Decimal)
            exponent = v.as_tuple().exponent
            assert isinstance(exponent, int) and exponent >= MIN_EXPONENT, v


# --------------------------------------------------------------------------------------------
# B: the property: any field schema, any parameters, any value

USUAL_TYPE = {
    DECIMAL: "bytes",
    VSD: "struct",
    "io.debezium.time.Date": "int32",
    "io.debezium.time.Time": "int32",
    "org.apache.kafka.connect.data.Date": "int32",
    "org.apache.kafka.connect.data.Time": "int32",
    "io.debezium.time.Timestamp": "int64",
    "org.apache.kafka.connect.data.Timestamp": "int64",
    "io.debezium.data.Bits": "bytes",
}
UNKNOWN_NAMES = [  # some are known to some versions of the decoder
    "io.debezium.data.Nope",
    "org.apache.kafka.connect.data.Decimal2",
    "",
    "Decimal",
    "io.debezium.data.geometry.Point",
    "io.debezium.data.geometry.Geometry",
    "io.debezium.data.DoubleVector",
    "io.debezium.data.FloatVector",
    "io.debezium.data.SparseVector",
]
UNKNOWN_TYPES = ["int128", "decimal", "STRING", "", "null"]
SOURCE_TYPES = [
    "NUMERIC",
    "MONEY",
    "money",
    "_MONEY",
    "_NUMERIC",
    "BIT",
    "VARBIT",
    "TIMESTAMP",
    "TIMESTAMPTZ",
    "DATE",
    "TIME",
    "INTERVAL",
    "VARCHAR",
    "BPCHAR",
    "TEXT",
    "INT4",
    "UUID",
    "JSONB",
    "DECIMAL",
    "BOX",
    "PATH",
    "POLYGON",
    "CIRCLE",
    "LINE",
    "LSEG",
    "POINT",
    "VECTOR",
    "_VARBIT",
    "UNKNOWN_TYPE",
    "",
]
INT_PARAM_KEYS = [
    "scale",
    "connect.decimal.precision",
    "__debezium.source.column.length",
    "__debezium.source.column.scale",
    "length",
]
EXTREME_INTS = [
    0,
    -1,
    2**31 - 1,
    2**31,
    -(2**31),
    2**32,
    2**63 - 1,
    2**63,
    -(2**63),
    -(2**63) - 1,
    2**64,
    10**30,
    -(10**30),
    10**100,
    16383,
    16384,
    1000,
    1001,
    131072,
    10**6,
    10**7,
    83886080,
    83886081,
]
ints = st.one_of(
    st.integers(-40, 40),
    st.integers(0, 2**31 - 1),
    st.integers(-(2**70), 2**70),
    st.sampled_from(EXTREME_INTS),
)
param_texts = st.one_of(
    ints.map(str),
    st.sampled_from(
        ["", "abc", "1.5", "1e3", "1e300", " 2 ", "NaN", "Infinity", "0x10", "1_000", "\u0663"]
    ),
    st.just("9" * 5000),
    st.text(max_size=8),
)
param_values = st.one_of(
    param_texts,
    ints,  # a JSON number, not the converter's string
    st.sampled_from([1e300, 1.5, -0.0, True, None, [], {}, [2], {"a": 1}]),
)


@st.composite
def parameters(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.sampled_from([None, "scale=2", [], ["scale", "2"], 7]))
    params: dict[str, Any] = {}
    for name in draw(st.lists(st.sampled_from(INT_PARAM_KEYS), unique=True, max_size=5)):
        params[name] = draw(param_values)
    if draw(st.booleans()):
        params["__debezium.source.column.type"] = draw(
            st.one_of(st.sampled_from(SOURCE_TYPES), st.text(max_size=10), param_values)
        )
    if draw(st.integers(0, 5)) == 0:
        params["allowed"] = draw(st.one_of(st.text(max_size=30), param_values))
    if draw(st.integers(0, 5)) == 0:
        params[draw(st.text(max_size=10))] = draw(param_values)
    return params


@st.composite
def field_schemas(draw: st.DrawFn, depth: int = 0) -> dict[str, Any]:
    """One Connect field schema: any logical name or primitive type (or an unknown one), any
    parameters, items when an array, sometimes a default."""
    which = draw(st.sampled_from(["logical"] * 5 + ["primitive"] * 3 + ["unknown"]))
    schema: dict[str, Any] = {}
    if which == "logical":
        name = draw(
            st.one_of(st.sampled_from([DECIMAL, VSD]), st.sampled_from(sorted(LOGICAL_TYPES)))
        )
        schema["name"] = name
        schema["type"] = draw(
            st.one_of(
                st.just(USUAL_TYPE.get(name, "string")), st.sampled_from(sorted(PRIMITIVE_TYPES))
            )
        )
        schema["version"] = 1
    elif which == "primitive":
        schema["type"] = draw(st.sampled_from(sorted(PRIMITIVE_TYPES)))
    elif draw(st.booleans()):
        schema["name"] = draw(st.one_of(st.sampled_from(UNKNOWN_NAMES), st.text(max_size=12)))
        schema["type"] = "string"
    else:
        schema["type"] = draw(st.one_of(st.sampled_from(UNKNOWN_TYPES), st.none(), ints))
    if draw(st.integers(0, 5)) > 0:
        schema["parameters"] = draw(parameters())
    if schema.get("type") == "array" and draw(st.integers(0, 9)) > 0:
        schema["items"] = (
            draw(field_schemas(depth + 1)) if depth < 2 else {"type": "int32", "optional": True}
        )
    elif schema.get("type") == "struct" and draw(st.booleans()):
        schema["fields"] = [
            {"type": "int32", "optional": False, "field": "scale"},
            {"type": "bytes", "optional": False, "field": "value"},
        ]
    schema["optional"] = draw(st.booleans())
    if draw(st.integers(0, 5)) == 0:
        schema["default"] = draw(json_values)
    return schema


SPECIAL_STRINGS = [
    "NaN",
    "Infinity",
    "-Infinity",
    "POSITIVE_INFINITY",
    "NEGATIVE_INFINITY",
    "NAN",
    "infinity",
    "-infinity",
    "1e999999999",
    "1e999999",
    "-1E-999999",
    "1e-16384",
    "0E+131072",
    "12345.678",
    "-0043-03-15T12:00:00Z",
    "+275760-09-13T00:00:00Z",
    "0000-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999999-14:00",
    "0001-01-01T00:00:00+14:00",
    "2024-02-30T00:00:00Z",
    "24:00:00Z",
    "23:59:59.999999-14:00",
    "00:00:00+14:00",
    "P2147483647Y",
    "P-1Y-2M3DT-4H5M-6.78S",
    "PT" + "9" * 5000 + "S",
    "P" + "9" * 4000 + "D",
    "PT.000001S",
    "PT",
    "00000000-0000-0000-0000-000000000000",
    "__debezium_unavailable_value",
    b64(b"__debezium_unavailable_value"),
    '{"a": [1, 2, {"b": null}]}',
    "",
    "=",
    "AA==",
    "////",
]
b64_strings = st.one_of(
    st.binary(max_size=64).map(b64),
    st.integers(-(2**200), 2**200).map(unscaled_b64),
    st.integers(0, 4096).map(lambda n: b64(b"\x7f" + b"\xff" * n)),  # ~10**(2.4 n)
    st.integers(0, 4096).map(lambda n: b64(b"\x80" + b"\x00" * n)),
)
json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    ints,
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.text(max_size=20),
    st.sampled_from(SPECIAL_STRINGS),
    b64_strings,
)
json_values = st.recursive(
    json_leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=6), inner, max_size=4),
        st.fixed_dictionaries({"scale": ints, "value": b64_strings}),  # VariableScaleDecimal
    ),
    max_leaves=8,
)


finite = st.floats(allow_nan=False, allow_infinity=False)
ISO_STRINGS = st.one_of(
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.isoformat() + "Z"),
    st.times(timezones=st.timezones()).map(lambda t: t.isoformat()),
    st.tuples(ints, st.integers(1, 12), st.integers(1, 28)).map(
        lambda t: f"{t[0]:05d}-{t[1]:02d}-{t[2]:02d}T12:00:00Z"
    ),
)
INTERVALS = st.lists(st.tuples(ints, st.sampled_from("YMWDHMS")), min_size=1, max_size=7).map(
    lambda parts: "P" + "".join(f"{n}{u}" if u in "YMWD" else f"T{n}{u}" for n, u in parts)
)
TYPED: dict[str, st.SearchStrategy[Any]] = {
    DECIMAL: st.one_of(b64_strings, st.sampled_from(SPECIAL_STRINGS), ints.map(str)),
    VSD: st.fixed_dictionaries({"scale": ints, "value": b64_strings}),
    "io.debezium.time.ZonedTimestamp": ISO_STRINGS,
    "io.debezium.time.ZonedTime": ISO_STRINGS,
    "io.debezium.time.Interval": st.one_of(INTERVALS, st.sampled_from(SPECIAL_STRINGS)),
    "io.debezium.data.Uuid": st.uuids().map(str),
    "io.debezium.data.Bits": b64_strings,
    "int8": ints,
    "int16": ints,
    "int32": ints,
    "int64": ints,
    "float": st.one_of(ints, finite, st.sampled_from(SPECIAL_STRINGS)),
    "double": st.one_of(ints, finite, st.sampled_from(SPECIAL_STRINGS)),
    "bytes": b64_strings,
    "string": st.one_of(st.text(max_size=20), st.sampled_from(SPECIAL_STRINGS), ints.map(str)),
    "io.debezium.data.geometry.Point": st.fixed_dictionaries(
        {"x": st.one_of(ints, finite), "y": st.one_of(ints, finite)}
    ),
    "io.debezium.data.DoubleVector": st.lists(st.one_of(ints, finite), max_size=6),
    "io.debezium.data.FloatVector": st.lists(st.one_of(ints, finite), max_size=6),
}


def values_for(schema: Any, depth: int = 0) -> st.SearchStrategy[Any]:
    """Values of any JSON shape, mostly of the shape ``schema`` expects (to get past the type
    checks into the decoders' arithmetic)."""
    if not isinstance(schema, dict):
        return json_values
    typed = TYPED.get(str(schema.get("name")))
    if typed is None:
        typed = TYPED.get(str(schema.get("type")))
    if typed is None and isinstance(schema.get("name"), str):
        typed = ints  # the int-based times, dates and durations
    if schema.get("type") == "array" and depth < 3:
        typed = st.lists(
            st.one_of(st.none(), values_for(schema.get("items"), depth + 1)), max_size=4
        )
    if typed is None:
        return json_values
    return st.one_of(typed, typed, typed, json_values)


@st.composite
def messages(draw: st.DrawFn) -> dict[str, Any]:
    """One row: ``id`` plus one or two generated fields, their values placed in ``after``
    (strict), ``before`` (lenient) and sometimes the key."""
    fields = [dict(ID)]
    after: dict[str, Any] = {"id": 1}
    for i in range(draw(st.integers(1, 2))):
        field = {**draw(field_schemas()), "field": f"c{i}"}
        fields.append(field)
        after[f"c{i}"] = draw(values_for(field))
    before = {"id": 1, **{f["field"]: draw(values_for(f)) for f in fields[1:]}}
    in_key = draw(st.booleans())
    return {
        "fields": fields,
        "after": after,
        "before": before if draw(st.booleans()) else None,
        "in_key": in_key,
        "op": draw(st.sampled_from(["c", "u", "r", "d"])),
    }


def one_field(field: dict[str, Any], value: Any, *, in_key: bool = False) -> dict[str, Any]:
    """A :func:`messages` case of ``id`` and one field ``v``."""
    field = {**field, "field": "v", "optional": field.get("optional", True)}
    after = {"id": 1, "v": value}
    return {"fields": [ID, field], "after": after, "before": None, "in_key": in_key, "op": "c"}


SOURCE_TYPE = "__debezium.source.column.type"
BIG_INT = 2**31 - 1
NUMERIC_TEXT = {"type": "string", "parameters": {SOURCE_TYPE: "NUMERIC"}}

_nonce = iter(range(10**12))


def timed(worker: Worker, build: Any) -> tuple[Outcome, float]:
    """The outcome and the fastest of up to :data:`ATTEMPTS` cold decodes (fresh nonce each:
    no plan cached) of the message ``build(nonce)`` returns as ``(key, value, hinted)``."""
    best = None
    for _ in range(ATTEMPTS):
        outcome, elapsed = worker.decode(*build(f"n{next(_nonce)}"))
        if best is None or elapsed < best[1]:
            best = (outcome, elapsed)
        if elapsed < LIMIT_S or outcome[0] == "hung":
            break
    assert best is not None
    return best


def check(what: str, outcome: Outcome, elapsed: float) -> None:
    status, message, found, _types, _cause = outcome
    assert status != "hung", f"{what}: decode_message never returned ({message})"
    assert status in ("ok", "skip", "DecodeError", "no hint"), (
        f"{what}: decode_message raised {status}: {message}"
    )
    assert elapsed < LIMIT_S, f"{what}: decode_message took {elapsed * 1000:.1f} ms"
    check_decimals(found)


@settings(
    max_examples=400,
    deadline=None,  # the worker measures each decode; HANG_S bounds one that never returns
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@example(msg=one_field(MONEY, unscaled_b64(12345), in_key=True))  # the money column
@example(msg=one_field(NUMERIC_TEXT, "1e999999"))  # decimal.handling.mode=string
@example(msg=one_field(NUMERIC_TEXT, "-1E-999999"))
@example(msg=one_field({**NUMERIC_TEXT, "parameters": {SOURCE_TYPE: "MONEY"}}, "1e999999"))
@example(
    msg=one_field(
        {"name": VSD, "type": "struct", "field": "v"}, {"scale": BIG_INT, "value": "AQ=="}
    )
)
@given(msg=messages())
def test_decode_message_does_bounded_work_on_any_field_schema_and_value(
    worker: Worker, msg: dict[str, Any]
) -> None:
    """For any field schemas (every logical name, every primitive type, unknown ones; any
    parameters) and any values: ``decode_message`` returns or raises DecodeError, and nothing
    else; each decode takes at most :data:`LIMIT_S` (cold plan cache) and the same message
    decoded again (its plan cached) too, with the same outcome; every Decimal it yields has a
    bounded size. The same rows decoded schemaless, typed by the schema the first decode gave
    (``schema_hint``), obey the same."""
    fields, after, before, op = msg["fields"], msg["after"], msg["before"], msg["op"]
    key_fields = fields if msg["in_key"] else [ID]
    key_row = after if msg["in_key"] else {"id": 1}

    def build(nonce: str) -> tuple[bytes, bytes, None]:
        value = envelope(fields, after, before=before, op=op, nonce=nonce)
        return key_message(key_fields, key_row, nonce), value, None

    outcome, elapsed = timed(worker, build)
    note(f"schema'd: {outcome[:2]} in {elapsed * 1000:.2f} ms")
    check("with its schema", outcome, elapsed)

    key, value, _ = build("cached")
    worker.decode(key, value)  # the plan, cached
    again, elapsed = timed(worker, lambda nonce: (key, value, None))
    check("with its schema, plan cached", again, elapsed)
    assert again[0] == outcome[0], f"cached plan: {again[:2]} but fresh plan: {outcome[:2]}"

    if outcome[0] == "ok":

        def build_hinted(nonce: str) -> tuple[bytes, bytes, bytes]:
            hinted = envelope(fields, after, before=before, op=op, nonce=nonce)
            return dumps(key_row), schemaless(after, before), hinted

        outcome, elapsed = timed(worker, build_hinted)
        note(f"schemaless with hint: {outcome[:2]} in {elapsed * 1000:.2f} ms")
        check("schemaless, with the schema as hint", outcome, elapsed)


BIG_UNSCALED = unscaled_b64(-(10**5000))  # 5001 digits: more than int -> str converts


@pytest.mark.parametrize("section", ["after", "before"])
def test_an_oversize_decimal_is_a_deliberate_decode_error(worker: Worker, section: str) -> None:
    """A Decimal of more digits than its declared precision is refused by the decoder's own
    check, not by the last-resort handler of ``decode_message`` turning an internal exception
    (int -> str of more than 4300 digits, in the error message) into a DecodeError; in
    ``before``, decoded leniently, the field becomes None and the message decodes."""
    field = {**MONEY, "parameters": {"scale": "2", "connect.decimal.precision": "10"}}
    rows = {"after": {"id": 1, "v": BIG_UNSCALED}, "before": {"id": 1, "v": unscaled_b64(1)}}
    if section == "before":
        rows = {"after": {"id": 1, "v": unscaled_b64(1)}, "before": {"id": 1, "v": BIG_UNSCALED}}
    value = envelope([ID, field], rows["after"], before=rows["before"], op="u", nonce=section)
    (status, message, _, _, cause), _elapsed = worker.decode(None, value)
    assert not cause, f"DecodeError wraps an internal {cause}: {message}"
    assert status == ("DecodeError" if section == "after" else "ok"), (status, message)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(msg=messages())
def test_decode_errors_are_deliberate(worker: Worker, msg: dict[str, Any]) -> None:
    """Every DecodeError comes from a check of the decoder, not from the last-resort handler
    of ``decode_message`` (which turns any other exception into a DecodeError, so that a
    poison message never stops the consumer, but hides a decoder bug: e.g. a value that
    ``before``'s lenient decoding should have set to None refuses the whole message)."""
    key = key_message(msg["fields"] if msg["in_key"] else [ID], {"id": 1}, "k")
    value = envelope(
        msg["fields"], msg["after"], before=msg["before"], op=msg["op"], nonce=str(next(_nonce))
    )
    (status, message, _, _, cause), _elapsed = worker.decode(key, value)
    assert status != "hung", "decode_message never returned"
    assert not cause, f"DecodeError wraps an internal {cause}: {message}"
