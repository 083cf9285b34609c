"""Athena (Trino) as the warehouse: run a query, stream its CSV result, unload a slice.

Athena writes every query result as a CSV object in S3: every non-NULL value in double quotes
(quotes inside doubled), NULL as an empty unquoted field, so the empty string is `""`, and
`\\n` after each record. The file layout is PostgreSQL's CSV instead (quotes only where
needed), so a slice is re-encoded record by record through `csv_layout.encode_record` while it
streams from S3 to a private temporary file: both engines deliver the same bytes.

Python's `csv` module cannot tell NULL from the empty string, so this module carries its own
small RFC 4180 tokenizer. Records that hold no quote, comma, CR or NUL inside a value and no
empty string take a bulk path (one regular expression over a whole block, then three byte
replacements); anything else is parsed field by field. Memory stays flat: one S3 chunk (plus
the one record spanning it) at a time.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from loader.csv_layout import encode_record
from loader.errors import ConfigurationError, MipsError, TerminalError, TransientError
from loader.retry import DEFAULT_POLICY, RetryPolicy, retrying
from loader.unload import SLICE_COLUMNS, UnloadedSlice

logger = logging.getLogger(__name__)

T = TypeVar("T")

RESULT_CHUNK_SIZE = 1024 * 1024
DEFAULT_CATALOG = "awsdatacatalog"
# Error codes of a throttled or briefly unavailable Athena or S3: worth another try later.
_RETRYABLE_CODES = frozenset(
    {
        "ThrottlingException",
        "TooManyRequestsException",
        "SlowDown",
        "InternalServerException",
        "InternalError",
        "ServiceUnavailable",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)


class AthenaQueryError(MipsError):
    """Any Athena failure: a query that failed, was cancelled or timed out, or whose result
    could not be read. The concrete class says what happens next (see below); the message
    names the query id when there is one and is safe to log."""

    def __init__(self, message: str, *, query_execution_id: str | None = None):
        super().__init__(message)
        self.message = message
        self.query_execution_id = query_execution_id

    def in_context(self, context: str) -> AthenaQueryError:
        """The same error (same class) with `context` (such as "2025/CA") in front."""
        return type(self)(f"{context}: {self.message}", query_execution_id=self.query_execution_id)


class AthenaTransientError(AthenaQueryError, TransientError):
    """Worth running the query again: Athena called the failure retryable, or the request was
    throttled, answered 5xx or lost its connection (also while reading the result)."""


class AthenaTerminalError(AthenaQueryError, TerminalError):
    """Running the query again will not help: a query error, a cancellation, a timeout, a
    refused request (access denied, no such bucket)."""


class AthenaResultError(AthenaTerminalError):
    """The query succeeded but its result is unreadable or not the CSV Athena writes."""


class AthenaConfigurationError(AthenaQueryError, ConfigurationError):
    """The target's Athena settings cannot work (no region, no credentials, no result
    location, a staging dir that is not an s3:// URL)."""


@dataclass(frozen=True)
class QueryResult:
    query_execution_id: str
    output_location: str  # s3://bucket/key.csv, as Athena reports it (a work group may move it)


def quote_identifier(name: str) -> str:
    """A Trino delimited identifier: the header names of the file layout contain spaces."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", type(exc).__name__))


def _error_message(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    text = str(response.get("Error", {}).get("Message", "")) or str(exc)
    return " ".join(text.split())


def _http_status(exc: Exception) -> int | None:
    response = getattr(exc, "response", None) or {}
    return response.get("ResponseMetadata", {}).get("HTTPStatusCode")


def _is_aws_error(exc: BaseException) -> bool:
    from botocore.exceptions import BotoCoreError, ClientError

    return isinstance(exc, (BotoCoreError, ClientError))


def _is_transient(exc: BaseException) -> bool:
    """Throttling, a 5xx, a dropped or timed-out connection: the same request may pass."""
    from botocore.exceptions import (
        ConnectionError as BotoConnectionError,
    )
    from botocore.exceptions import (
        HTTPClientError,
        IncompleteReadError,
        ResponseStreamingError,
    )

    if isinstance(
        exc,
        (
            BotoConnectionError,
            HTTPClientError,
            IncompleteReadError,
            ResponseStreamingError,
            OSError,
        ),
    ):
        return True
    status = _http_status(exc)
    return _error_code(exc) in _RETRYABLE_CODES or status == 429 or (status or 0) >= 500


def _is_configuration(exc: BaseException) -> bool:
    from botocore.exceptions import NoCredentialsError, NoRegionError, PartialCredentialsError

    return isinstance(exc, (NoCredentialsError, NoRegionError, PartialCredentialsError))


def _aws_failure(
    exc: BaseException,
    message: str,
    *,
    query_execution_id: str | None = None,
    terminal: type[AthenaTerminalError] = AthenaTerminalError,
) -> AthenaQueryError:
    """The error class for a failed AWS call: configuration, transient or `terminal`."""
    if _is_configuration(exc):
        return AthenaConfigurationError(
            f"{message}: {type(exc).__name__}: {exc}", query_execution_id=query_execution_id
        )
    cls = AthenaTransientError if _is_transient(exc) else terminal
    return cls(
        f"{message}: {_error_code(exc)}: {_error_message(exc)}",
        query_execution_id=query_execution_id,
    )


def split_s3_url(url: str) -> tuple[str, str]:
    if not url.startswith("s3://") or "/" not in url[5:]:
        raise AthenaResultError(f"result location {url!r} is not an s3://bucket/key URL")
    bucket, key = url[5:].split("/", 1)
    return bucket, key


def _boto3_clients(settings: Mapping[str, Any]):
    """Athena and S3 clients from the dbt-athena profile's own fields (credentials stay in
    the session). botocore makes one attempt per request: `loader.retry` is the budget."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError

    options: dict[str, Any] = {"region_name": settings.get("region_name")}
    if settings.get("aws_profile_name"):
        options["profile_name"] = settings["aws_profile_name"]
    for field in ("aws_access_key_id", "aws_secret_access_key", "aws_session_token"):
        if settings.get(field):
            options[field] = settings[field]
    config = Config(retries={"mode": "standard", "total_max_attempts": 1})
    try:
        session = boto3.Session(**options)
        return session.client("athena", config=config), session.client("s3", config=config)
    except BotoCoreError as exc:  # no region, an unknown profile
        raise AthenaConfigurationError(
            f"the Athena target's AWS settings cannot be used: {type(exc).__name__}: {exc}"
        ) from None


class AthenaClient:
    """Runs queries in the target's work group and reads their results from S3.

    `settings` is the rendered dbt-athena target (`s3_staging_dir`, `region_name`, `database`
    = catalog, `schema`, `work_group`); only what is needed is kept, never the credentials.
    `client` and `s3` replace the boto3 clients (tests); `sleep` replaces the wait between
    polls, which start at `poll_initial` seconds and double up to `poll_max`, and the waits
    between tries; `retry_policy` is `loader.retry`'s (the one policy) unless a test says.
    """

    def __init__(
        self,
        settings: Mapping[str, Any],
        *,
        client=None,
        s3=None,
        poll_initial: float = 0.2,
        poll_max: float = 5.0,
        timeout_s: float = 1800,
        sleep: Callable[[float], None] = time.sleep,
        retry_policy: RetryPolicy = DEFAULT_POLICY,
    ):
        if poll_initial <= 0 or poll_max < poll_initial or timeout_s <= 0:
            raise ValueError("need 0 < poll_initial <= poll_max and timeout_s > 0")
        self.catalog = str(settings.get("database") or DEFAULT_CATALOG)
        self.schema = settings.get("schema")
        self.work_group = settings.get("work_group") or None
        self.s3_staging_dir = settings.get("s3_staging_dir") or None
        if self.s3_staging_dir is not None and not str(self.s3_staging_dir).startswith("s3://"):
            raise AthenaConfigurationError(
                f"s3_staging_dir {str(self.s3_staging_dir)!r} is not an s3:// URL"
            )
        self.poll_initial = poll_initial
        self.poll_max = poll_max
        self.timeout_s = timeout_s
        self.retry_policy = retry_policy
        self._sleep = sleep
        if client is None or s3 is None:
            default_client, default_s3 = _boto3_clients(settings)
            client = client if client is not None else default_client
            s3 = s3 if s3 is not None else default_s3
        self._client = client
        self._s3 = s3

    # --- queries ----------------------------------------------------------------------------

    def run_query(self, sql: str) -> QueryResult:
        """Start `sql`, wait for it and return where its CSV result is.

        A transient failure (Athena's `Retryable`, throttling, 5xx, a lost connection) starts
        the query again under the one retry policy; any other failure is raised at once.
        """
        return self.fetch(sql, lambda result: result)

    def fetch(self, sql: str, consume: Callable[[QueryResult], T]) -> T:
        """Run `sql` and hand its result to `consume` (which reads it), as one retried unit:
        an `AthenaTransientError` anywhere from the start of the query to the last byte
        `consume` reads runs the whole query again. `consume` must be safe to repeat."""
        return retrying(
            lambda: consume(self._run_query_once(sql)),
            policy=self.retry_policy,
            sleep=self._sleep,
        )

    def _run_query_once(self, sql: str) -> QueryResult:
        request: dict[str, Any] = {
            "QueryString": sql,
            "QueryExecutionContext": {"Catalog": self.catalog},
        }
        if self.schema:
            request["QueryExecutionContext"]["Database"] = str(self.schema)
        if self.work_group:
            request["WorkGroup"] = str(self.work_group)
        if self.s3_staging_dir:
            request["ResultConfiguration"] = {"OutputLocation": str(self.s3_staging_dir)}
        try:
            query_execution_id = self._client.start_query_execution(**request)["QueryExecutionId"]
        except Exception as exc:
            if not _is_aws_error(exc):
                raise
            raise _aws_failure(exc, "Athena query could not start") from exc
        return self.wait(query_execution_id)

    def wait(self, query_execution_id: str) -> QueryResult:
        """Poll until the query ends; stop it and raise if it runs past `timeout_s`."""
        started = time.monotonic()
        waited = 0.0  # counts injected sleeps too, so a fake `sleep` still reaches the timeout
        delay = self.poll_initial
        try:
            while True:
                execution = self._describe(query_execution_id)
                status = execution.get("Status", {})
                state = status.get("State")
                if state == "SUCCEEDED":
                    location = execution.get("ResultConfiguration", {}).get("OutputLocation")
                    if not location:
                        raise AthenaConfigurationError(
                            f"Athena query {query_execution_id} succeeded without a result "
                            "location (set s3_staging_dir or the work group's output location)",
                            query_execution_id=query_execution_id,
                        )
                    return QueryResult(query_execution_id, location)
                if state in ("FAILED", "CANCELLED"):
                    raise _ended_badly(query_execution_id, state, status)
                # QUEUED, RUNNING, or a state newer than this code: keep waiting.
                elapsed = max(time.monotonic() - started, waited)
                if elapsed >= self.timeout_s:
                    self.stop(query_execution_id)
                    raise AthenaTerminalError(
                        f"Athena query {query_execution_id} did not finish within "
                        f"{self.timeout_s:g} s (last state {state}); it was stopped",
                        query_execution_id=query_execution_id,
                    )
                pause = min(delay, self.timeout_s - elapsed)
                self._sleep(pause)
                waited += pause
                delay = min(delay * 2, self.poll_max)
        except AthenaQueryError:
            raise
        except BaseException:
            # Interrupted or unable to poll: do not leave the query running (and billing).
            self.stop(query_execution_id)
            raise

    def _describe(self, query_execution_id: str) -> dict[str, Any]:
        try:
            response = self._client.get_query_execution(QueryExecutionId=query_execution_id)
        except Exception as exc:
            if not _is_aws_error(exc):
                raise
            self.stop(query_execution_id)
            error = _aws_failure(exc, f"Athena query {query_execution_id} could not be polled")
            raise type(error)(
                f"{error.message}; it was stopped", query_execution_id=query_execution_id
            ) from exc
        return response["QueryExecution"]

    def stop(self, query_execution_id: str) -> None:
        """Ask Athena to stop the query; a failure to do so is logged, not raised."""
        try:
            self._client.stop_query_execution(QueryExecutionId=query_execution_id)
        except Exception as exc:  # noqa: BLE001 - best effort on a path that is already failing
            logger.warning(
                "could not stop Athena query %s: %s", query_execution_id, _error_code(exc)
            )

    def result_columns(self, query_execution_id: str) -> list[str]:
        """Column names of a finished query, from the result set metadata."""
        try:
            response = self._client.get_query_results(
                QueryExecutionId=query_execution_id, MaxResults=1
            )
        except Exception as exc:
            if not _is_aws_error(exc):
                raise
            raise _aws_failure(
                exc,
                f"Athena query {query_execution_id}: result metadata could not be read",
                query_execution_id=query_execution_id,
                terminal=AthenaResultError,
            ) from exc
        metadata = response.get("ResultSet", {}).get("ResultSetMetadata", {})
        return [column["Name"] for column in metadata.get("ColumnInfo", [])]

    # --- results ----------------------------------------------------------------------------

    def stream_result_csv(
        self, output_location: str, *, chunk_size: int = RESULT_CHUNK_SIZE
    ) -> Iterator[bytes]:
        """The result object's bytes, chunk by chunk; never the whole object in memory.

        A dropped connection or a throttled read is an `AthenaTransientError`: inside
        `fetch`, the whole query runs again."""
        bucket, key = split_s3_url(output_location)
        try:
            body = self._s3.get_object(Bucket=bucket, Key=key)["Body"]
        except Exception as exc:
            if not _is_aws_error(exc):
                raise
            raise _aws_failure(
                exc, f"result {output_location} could not be read", terminal=AthenaResultError
            ) from exc
        try:
            # botocore checks the byte count against Content-Length at the end of the body.
            yield from body.iter_chunks(chunk_size)
        except Exception as exc:
            if not (_is_aws_error(exc) or isinstance(exc, OSError)):
                raise
            raise AthenaTransientError(
                f"reading result {output_location} broke off: {type(exc).__name__}: "
                f"{' '.join(str(exc).split())}"
            ) from exc
        finally:
            body.close()


def _ended_badly(query_execution_id: str, state: str, status: Mapping[str, Any]):
    reason = " ".join(str(status.get("StateChangeReason") or "").split())
    athena_error = status.get("AthenaError") or {}
    if state == "CANCELLED":
        message = f"Athena query {query_execution_id} was cancelled"
        if reason:
            message += f": {reason}"
        return AthenaTerminalError(message, query_execution_id=query_execution_id)
    message = f"Athena query {query_execution_id} failed: {reason or 'no reason given'}"
    # Athena's own verdict (AthenaError.Retryable): a transient failure such as exhausted
    # resources or an internal error; anything else (a query error) is final.
    cls = AthenaTransientError if athena_error.get("Retryable") else AthenaTerminalError
    return cls(message, query_execution_id=query_execution_id)


# --- the CSV tokenizer -------------------------------------------------------------------------

_QUOTED_FIELD = re.compile(rb'"([^"]*(?:""[^"]*)*)"')
_BARE_FIELD = re.compile(rb'[^,"\r\n]*')
# A value the bulk path may copy without its quotes: PostgreSQL would not quote it either.
# NUL is excluded because the bulk path uses it as a placeholder for "".
_PLAIN_FIELD = rb'(?:"[^",\r\n\x00]+"|""|)'


class CsvRecordSplitter:
    """Cuts a CSV byte stream into blocks of whole records, whatever the chunk boundaries.

    A newline ends a record only outside quotes, i.e. where the number of quotes since the
    start of the record is even (a doubled quote inside a value counts twice).
    """

    def __init__(self) -> None:
        self._pending: list[bytes] = []
        self._odd_quotes = False  # quote parity of the pending (incomplete) record
        self.offset = 0  # stream offset of the first pending byte, for error messages

    def feed(self, chunk: bytes) -> bytes:
        """The whole records completed by `chunk` (possibly b""); the rest waits."""
        quotes = chunk.count(b'"')
        end_parity = self._odd_quotes ^ bool(quotes & 1)
        quotes_after = 0
        stop = len(chunk)
        newline = chunk.rfind(b"\n")
        while newline >= 0:
            quotes_after += chunk.count(b'"', newline, stop)
            if not (end_parity ^ bool(quotes_after & 1)):
                break  # even parity before this newline: it ends a record
            stop = newline
            newline = chunk.rfind(b"\n", 0, newline)
        if newline < 0:
            self._pending.append(chunk)
            self._odd_quotes = end_parity
            return b""
        block = b"".join([*self._pending, chunk[: newline + 1]])
        rest = chunk[newline + 1 :]
        self._pending = [rest] if rest else []
        self._odd_quotes = bool(quotes_after & 1)
        self.offset += len(block)
        return block

    def finish(self) -> bytes:
        """What is left at the end of the stream: a last record without its newline, or b""."""
        rest = b"".join(self._pending)
        self._pending = []
        if self._odd_quotes:
            raise AthenaResultError(
                f"result is not valid CSV: it ends inside a quoted value (byte {self.offset})"
            )
        if not rest:
            return b""
        self.offset += len(rest)
        return rest + b"\n"


def _decode(raw: bytes, offset: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AthenaResultError(
            f"result is not valid UTF-8 near byte {offset + exc.start}"
        ) from None


def parse_record(block: bytes, pos: int, offset: int = 0) -> tuple[list[str | None], int]:
    """The record starting at `pos` of a block of whole records, and where the next starts.

    A quoted field is a string (`""` is the empty string); an empty unquoted field is None.
    `offset` is the block's position in the stream, for error messages.
    """
    fields: list[str | None] = []
    while True:
        if block.startswith(b'"', pos):
            match = _QUOTED_FIELD.match(block, pos)
            if match is None:
                raise AthenaResultError(
                    f"result is not valid CSV: unterminated quoted value at byte {offset + pos}"
                )
            raw = match.group(1)
            value = raw.replace(b'""', b'"') if b'"' in raw else raw
            fields.append(_decode(value, offset + pos + 1))
        else:
            match = _BARE_FIELD.match(block, pos)
            raw = match.group()
            fields.append(_decode(raw, offset + pos) if raw else None)
        pos = match.end()
        if block.startswith(b",", pos):
            pos += 1
        elif block.startswith(b"\n", pos):
            return fields, pos + 1
        elif block.startswith(b"\r\n", pos):
            return fields, pos + 2
        else:
            raise AthenaResultError(
                f"result is not valid CSV: unexpected byte {block[pos : pos + 1]!r} "
                f"at byte {offset + pos}"
            )


def iter_csv_records(chunks: Iterable[bytes]) -> Iterator[list[str | None]]:
    """Every record of a CSV byte stream, NULL (unquoted empty) kept apart from ""."""
    splitter = CsvRecordSplitter()

    def records(block: bytes, offset: int) -> Iterator[list[str | None]]:
        pos = 0
        while pos < len(block):
            fields, pos = parse_record(block, pos, offset)
            yield fields

    for chunk in chunks:
        offset = splitter.offset
        yield from records(splitter.feed(chunk), offset)
    offset = splitter.offset
    yield from records(splitter.finish(), offset)


class AthenaCsvReencoder:
    """Athena's result CSV in, the file layout's bytes out, block by block.

    The first record is Athena's header: when `columns` is given it must name them (compared
    case-insensitively, as Athena/Glue lower-case column names) and the header written is
    `header` (default: `columns`; else Athena's own). Every record must have as many fields
    as the header. `rows` counts the data records written so far.
    """

    def __init__(
        self, columns: Sequence[str] | None = None, *, header: Sequence[str] | None = None
    ):
        self.columns = list(columns) if columns is not None else None
        self.header = list(header) if header is not None else self.columns
        if (
            self.header is not None
            and self.columns is not None
            and (len(self.header) != len(self.columns))
        ):
            raise ValueError("header and columns differ in length")
        self.rows = 0
        self._splitter = CsvRecordSplitter()
        self._width: int | None = None
        self._bulk: re.Pattern[bytes] | None = None

    def reencode(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            block = self.feed(chunk)
            if block:
                yield block
        block = self.finish()
        if block:
            yield block

    def feed(self, chunk: bytes) -> bytes:
        offset = self._splitter.offset
        return self._convert(self._splitter.feed(bytes(chunk)), offset)

    def finish(self) -> bytes:
        offset = self._splitter.offset
        out = self._convert(self._splitter.finish(), offset)
        if self._width is None:
            # No header at all (an empty object): the file still gets one.
            if self.header is None:
                raise AthenaResultError("result is empty: not even a header row")
            self._width = len(self.header)
            out = encode_record(self.header)
        return out

    def _start(self, athena_header: list[str | None], offset: int) -> bytes:
        names = [name or "" for name in athena_header]
        if self.columns is not None and [n.lower() for n in names] != [
            c.lower() for c in self.columns
        ]:
            raise AthenaResultError(
                f"result columns {names} are not the ones selected {self.columns}"
            )
        if self.header is None:
            self.header = names
        self._width = len(names)
        if self._width > 1:
            # Whole records of plain values; one regex pass, no Python per field.
            record = _PLAIN_FIELD + (rb"," + _PLAIN_FIELD) * (self._width - 1) + rb"\n"
            self._bulk = re.compile(rb"(?:" + record + rb")*")
        return encode_record(self.header)

    def _convert(self, block: bytes, offset: int) -> bytes:
        out: list[bytes] = []
        pos = 0
        if block and self._width is None:
            athena_header, pos = parse_record(block, 0, offset)
            out.append(self._start(athena_header, offset))
        while pos < len(block):
            if self._bulk is not None:
                end = self._bulk.match(block, pos).end()
                if end > pos:
                    plain = block[pos:end]
                    _decode(plain, offset + pos)  # validates UTF-8; the bytes pass through
                    out.append(
                        plain.replace(b'""', b"\x00").replace(b'"', b"").replace(b"\x00", b'""')
                    )
                    self.rows += plain.count(b"\n")
                    pos = end
                    continue
            fields, next_pos = parse_record(block, pos, offset)
            if len(fields) != self._width:
                raise AthenaResultError(
                    f"result is not valid CSV: a record at byte {offset + pos} has "
                    f"{len(fields)} fields, the header {self._width}"
                )
            out.append(encode_record(fields))
            self.rows += 1
            pos = next_pos
        return b"".join(out)


# --- slices ------------------------------------------------------------------------------------


def athena_file_columns(client: AthenaClient, relation: str) -> list[str]:
    """The export model's file columns, in table order (one `limit 0` query: pass them on)."""
    slice_columns = {c.lower() for c in SLICE_COLUMNS}
    names = client.fetch(
        f"select * from {relation} limit 0",
        lambda result: client.result_columns(result.query_execution_id),
    )
    return [c for c in names if c.lower() not in slice_columns]


def _slice_filter(year: int, state: str) -> str:
    return f"performance_year = {int(year)} and state_code = {quote_literal(state)}"


def athena_slice_query(relation: str, year: int, state: str, columns: Sequence[str]) -> str:
    selected = ", ".join(quote_identifier(c) for c in columns)
    return (
        f"select {selected} from {relation} where {_slice_filter(year, state)}"
        " order by file_row_number"
    )


def _drain(blocks: Iterable[bytes], sink: BinaryIO | None) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    for block in blocks:
        digest.update(block)
        size += len(block)
        if sink is not None:
            sink.write(block)
    return size, digest.hexdigest()


def unload_athena_slice(
    client: AthenaClient,
    relation: str,
    year: int,
    state: str,
    *,
    work_dir: Path | None,
    columns: Sequence[str] | None = None,
    header: Sequence[str] | None = None,
) -> UnloadedSlice:
    """The slice in the file layout, in a 0600 file in `work_dir` (None: count and hash only).

    `columns` are the file columns to select (default: `athena_file_columns`, one extra
    query); `header` the header row to write (default: `columns`). Errors name the slice.
    """
    label = f"{year}/{state}"
    last_query: list[str] = []  # the id of the query being read, for error messages

    def read(result: QueryResult) -> UnloadedSlice:
        last_query[:] = [result.query_execution_id]
        reencoder = AthenaCsvReencoder(columns, header=header)
        blocks = reencoder.reencode(client.stream_result_csv(result.output_location))
        if work_dir is None:
            size, sha = _drain(blocks, None)
            return UnloadedSlice(path=None, rows=reencoder.rows, bytes=size, sha256=sha)
        fd, name = tempfile.mkstemp(prefix=f"{year}-{state}-", suffix=".csv", dir=work_dir)
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as sink:
                size, sha = _drain(blocks, sink)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return UnloadedSlice(path=path, rows=reencoder.rows, bytes=size, sha256=sha)

    try:
        if columns is None:
            columns = athena_file_columns(client, relation)
        # One retried unit: a result that breaks off runs the query again, into a new file.
        return client.fetch(athena_slice_query(relation, year, state, columns), read)
    except AthenaQueryError as exc:
        raise exc.in_context(_context(label, exc, last_query)) from exc


def _context(label: str, exc: AthenaQueryError, last_query: list[str]) -> str:
    """`label`, plus the query id when the error (a result problem) does not name it."""
    if exc.query_execution_id is None and last_query:
        return f"{label}: Athena query {last_query[0]}"
    return label


def count_athena_slice(client: AthenaClient, relation: str, year: int, state: str) -> int:
    label = f"{year}/{state}"
    last_query: list[str] = []

    def read(result: QueryResult) -> int:
        last_query[:] = [result.query_execution_id]
        records = list(iter_csv_records(client.stream_result_csv(result.output_location)))
        if len(records) != 2 or len(records[1]) != 1 or not (records[1][0] or "").isdigit():
            raise AthenaResultError("count result is not one number")
        return int(records[1][0])

    try:
        return client.fetch(
            f'select count(*) as "rows" from {relation} where {_slice_filter(year, state)}', read
        )
    except AthenaQueryError as exc:
        raise exc.in_context(_context(label, exc, last_query)) from exc
