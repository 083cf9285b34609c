"""Athena (Trino) as the warehouse: run a query under the retry policy, stream its result.

The result is read inside `fetch`, so a transient failure while reading reruns the query;
`athena_csv` turns the result into records, `athena_slices` unloads and counts slices.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from loader import aws
from loader.errors import (
    CONFIGURATION,
    INTERRUPTED,
    TRANSIENT,
    UNREACHABLE,
    ConfigurationError,
    MipsError,
    TerminalError,
    TransientError,
    UnreachableError,
)
from loader.retry import DEFAULT_POLICY, RetryPolicy, retrying

logger = logging.getLogger(__name__)

T = TypeVar("T")

RESULT_CHUNK_SIZE = 1024 * 1024
DEFAULT_CATALOG = "awsdatacatalog"


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


class AthenaUnreachableError(AthenaTransientError, UnreachableError):
    """Athena or S3 did not answer at all (refused, timed out, name not resolved)."""


class AthenaTerminalError(AthenaQueryError, TerminalError):
    """Running the query again will not help: a query error, a cancellation, a timeout, a
    refused request."""


class AthenaResultError(AthenaTerminalError):
    """The query succeeded but its result is unreadable or not the CSV Athena writes."""


class AthenaConfigurationError(AthenaTerminalError, ConfigurationError):
    """The target's Athena settings cannot work (no region, no credentials or ones AWS does
    not accept, access denied, no such bucket, no result location, a staging dir that is not
    an s3:// URL)."""


@dataclass(frozen=True)
class QueryResult:
    query_execution_id: str
    output_location: str  # s3://bucket/key.csv, as Athena reports it (a work group may move it)


def quote_identifier(name: str) -> str:
    """A Trino delimited identifier (schema, relation and column names are quoted as given)."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _error_message(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    text = str(response.get("Error", {}).get("Message", "")) or str(exc)
    return " ".join(text.split())


# The Athena error class of each kind of AWS failure (`loader.aws.classify`).
_ERRORS: dict[str, type[AthenaQueryError]] = {
    TRANSIENT: AthenaTransientError,
    UNREACHABLE: AthenaUnreachableError,
    CONFIGURATION: AthenaConfigurationError,
}


def _aws_failure(
    exc: BaseException,
    message: str,
    *,
    query_execution_id: str | None = None,
    terminal: type[AthenaTerminalError] = AthenaTerminalError,
) -> AthenaQueryError:
    """The error for a failed AWS call: its kind's class (`terminal` for anything else)."""
    cls = _ERRORS.get(aws.classify(exc), terminal)
    return cls(
        f"{message}: {aws.code_or_type(exc)}: {_error_message(exc)}",
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
        session = aws.session(**options)
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

    @property
    def s3(self):
        """The S3 client the results are read with (the run lock writes beside them)."""
        return self._s3

    def staging_object(self, name: str) -> tuple[str, str]:
        """(bucket, key) of `name` below the work group's `s3_staging_dir`."""
        if self.s3_staging_dir is None:
            raise AthenaConfigurationError("the Athena target has no s3_staging_dir")
        bucket, prefix = split_s3_url(str(self.s3_staging_dir).rstrip("/") + "/")
        return bucket, f"{prefix}{name}"

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
            if not aws.is_aws_error(exc):
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
                if INTERRUPTED.is_set():
                    # A signal stopped the run; in an unload thread this is how it hears.
                    raise KeyboardInterrupt("interrupted while the query ran")
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
            if not aws.is_aws_error(exc):
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
                "could not stop Athena query %s: %s", query_execution_id, aws.code_or_type(exc)
            )

    def result_columns(self, query_execution_id: str) -> list[str]:
        """Column names of a finished query, from the result set metadata."""
        try:
            response = self._client.get_query_results(
                QueryExecutionId=query_execution_id, MaxResults=1
            )
        except Exception as exc:
            if not aws.is_aws_error(exc):
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
            if not aws.is_aws_error(exc):
                raise
            raise _aws_failure(
                exc, f"result {output_location} could not be read", terminal=AthenaResultError
            ) from exc
        try:
            # botocore checks the byte count against Content-Length at the end of the body.
            yield from body.iter_chunks(chunk_size)
        except Exception as exc:
            if not (aws.is_aws_error(exc) or isinstance(exc, OSError)):
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
