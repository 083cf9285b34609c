"""The run lock that keeps two exports apart, for either engine.

PostgreSQL targets hold a session advisory lock (`export_lock`). Athena has none, so its lock
(`s3_run_lock`) is an S3 object written with `If-None-Match: *` (S3 answers 412 when it already
exists). Its JSON body says who holds it and until when. A lock past its `expires_at` (a
crashed run) is removed with `If-Match: <its ETag>`, so of two runs that both find it expired
only one wins, and taken once more. At exit the lock is deleted only if its ETag is still ours.
Each S3 request is one unit of the one retry policy (`loader.retry`); what a failure is, is
`loader.aws.classify`'s, as for the S3 store and Athena.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from loader import aws
from loader.errors import (
    CONFIGURATION,
    TRANSIENT,
    UNREACHABLE,
    ConfigurationError,
    LockedError,
    TerminalError,
    TransientError,
    UnreachableError,
)
from loader.retry import DEFAULT_POLICY, RetryPolicy, retrying

logger = logging.getLogger(__name__)

DEFAULT_TTL_SECONDS = 6 * 3600
# Answers of a store that does not accept a condition on DeleteObject.
_CONDITION_UNSUPPORTED = frozenset({"NotImplemented", "InvalidArgument", "InvalidRequest"})
# The advisory lock key of a PostgreSQL export: any constant works, as long as every loader
# on the database uses the same one.
EXPORT_LOCK_KEY = 7_342_610_221


class ExportLocked(LockedError):
    """Another export holds the lock on this database."""


@contextlib.contextmanager
def export_lock(conn) -> Iterator[None]:
    """A session advisory lock: a second concurrent export against this database stops."""
    locked = conn.execute("select pg_try_advisory_lock(%s)", (EXPORT_LOCK_KEY,)).fetchone()[0]
    if not locked:
        holder = conn.execute(
            "select pid from pg_locks where locktype = 'advisory' and objid = %s and granted",
            (EXPORT_LOCK_KEY & 0xFFFFFFFF,),
        ).fetchone()
        who = f" (held by backend pid {holder[0]})" if holder else ""
        raise ExportLocked(f"another mips-loader export is running on this database{who}")
    try:
        yield
    finally:
        # A lost connection has lost the lock with it: the run's results must still be told.
        try:
            conn.execute("select pg_advisory_unlock(%s)", (EXPORT_LOCK_KEY,))
        except Exception as exc:  # noqa: BLE001 - psycopg's errors when the database is gone
            logger.warning("could not release the export lock: %s", type(exc).__name__)


class S3LockError(TerminalError):
    """The lock could not be read, taken or released for a reason other than another holder.
    A lock held by another run is `ExportLocked`: the run stops, nothing is retried."""


class S3LockConfigurationError(S3LockError, ConfigurationError):
    """The lock's bucket is not there, or these credentials may not use it."""


class S3LockUnavailable(TransientError):
    """S3 did not answer the lock's request (throttled, 5xx, a dropped connection); raised
    once the retries are spent."""


class S3LockUnreachable(S3LockUnavailable, UnreachableError):
    """S3 could not be reached at all (refused, timed out, name not resolved)."""


# The lock's error class of each kind of S3 failure (`loader.aws.classify`); S3LockError else.
_LOCK_ERRORS: dict[str, type[S3LockError] | type[S3LockUnavailable]] = {
    CONFIGURATION: S3LockConfigurationError,
    TRANSIENT: S3LockUnavailable,
    UNREACHABLE: S3LockUnreachable,
}


@dataclass(frozen=True)
class RunLock:
    bucket: str
    key: str
    etag: str
    owner: str
    expires_at: dt.datetime


@dataclass(frozen=True)
class _Holder:
    etag: str
    owner: str
    host: str
    pid: str
    acquired_at: str
    expires_at: dt.datetime | None
    token: str | None = None

    def describe(self) -> str:
        until = self.expires_at.isoformat() if self.expires_at else "an unknown time"
        return (
            f"held by {self.owner} on {self.host} (pid {self.pid}) since {self.acquired_at}, "
            f"until {until}"
        )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def _same_etag(a: str, b: str) -> bool:
    return a.strip('"') == b.strip('"')


def _failure(exc: BaseException) -> str:
    """What S3 answered (its code), or why there was no answer."""
    if aws.error_code(exc):
        return aws.error_code(exc)
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


class _LockObject:
    """The lock's S3 object: every request under the retry policy, every failure classified."""

    def __init__(self, s3_client, bucket: str, key: str, policy: RetryPolicy, sleep):
        self.s3 = s3_client
        self.bucket = bucket
        self.key = key
        self.where = f"s3://{bucket}/{key}"
        self._policy = policy
        self._sleep = sleep

    def request(
        self, doing: str, call: Callable[[], Any], answers: frozenset[str] = frozenset()
    ) -> Any:
        """S3's response to `call`, or the kind of answer (`aws.NOT_FOUND`,
        `aws.PRECONDITION_FAILED`) when it is one of `answers`. A transient failure is tried
        again under the policy; any other, or the last, is a lock error of its kind."""

        def once() -> Any:
            try:
                return call()
            except Exception as exc:
                if not aws.is_aws_error(exc):
                    raise
                kind = aws.classify(exc)
                if kind in answers:
                    return kind
                error = _LOCK_ERRORS.get(kind, S3LockError)
                raise error(f"cannot {doing} the run lock {self.where}: {_failure(exc)}") from exc

        return retrying(once, policy=self._policy, sleep=self._sleep)

    def read_holder(self, ttl_seconds: int) -> _Holder | None:
        def get() -> tuple[dict, bytes]:
            response = self.s3.get_object(Bucket=self.bucket, Key=self.key)
            return response, response["Body"].read(64 * 1024)

        answer = self.request("read", get, frozenset({aws.NOT_FOUND}))
        if answer == aws.NOT_FOUND:
            return None
        response, body = answer
        etag = response["ETag"]
        try:
            data = json.loads(body)
            expires_at = dt.datetime.fromisoformat(data["expires_at"])
            if expires_at.tzinfo is None:
                expires_at = expires_at.replace(tzinfo=dt.timezone.utc)
        except (ValueError, KeyError, TypeError):
            # Not a lock this code wrote: it expires `ttl_seconds` after it was written.
            data = {}
            expires_at = response["LastModified"] + dt.timedelta(seconds=ttl_seconds)
        return _Holder(
            etag=etag,
            owner=str(data.get("owner", "an unknown owner")),
            host=str(data.get("host", "an unknown host")),
            pid=str(data.get("pid", "?")),
            acquired_at=str(data.get("acquired_at", response["LastModified"].isoformat())),
            expires_at=expires_at,
            token=data.get("token"),
        )

    def put_if_absent(self, body: bytes) -> str | None:
        """The new object's ETag, or None when the key already exists."""
        response = self.request(
            "take",
            lambda: self.s3.put_object(
                Bucket=self.bucket,
                Key=self.key,
                Body=body,
                ContentType="application/json",
                IfNoneMatch="*",
            ),
            frozenset({aws.PRECONDITION_FAILED}),
        )
        return None if response == aws.PRECONDITION_FAILED else response["ETag"]

    def delete_if_unchanged(self, etag: str) -> bool:
        """Delete the object if its ETag is still `etag`; False if it changed or is gone."""
        gone = frozenset({aws.PRECONDITION_FAILED, aws.NOT_FOUND})
        try:
            answer = self.request(
                "delete",
                lambda: self.s3.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=etag),
                gone,
            )
        except S3LockError as exc:
            if aws.error_code(exc.__cause__) not in _CONDITION_UNSUPPORTED:
                raise
        else:
            return not isinstance(answer, str)  # a response, not one of `gone`
        # This store ignores conditions on delete: compare, then delete (a narrow race remains).
        head = self.request(
            "delete",
            lambda: self.s3.head_object(Bucket=self.bucket, Key=self.key),
            frozenset({aws.NOT_FOUND}),
        )
        if head == aws.NOT_FOUND or not _same_etag(head["ETag"], etag):
            return False
        answer = self.request(
            "delete",
            lambda: self.s3.delete_object(Bucket=self.bucket, Key=self.key),
            frozenset({aws.NOT_FOUND}),
        )
        return answer != aws.NOT_FOUND


@contextlib.contextmanager
def s3_run_lock(
    s3_client,
    bucket: str,
    key: str,
    *,
    ttl_seconds: int = DEFAULT_TTL_SECONDS,
    owner: str,
    retry_policy: RetryPolicy = DEFAULT_POLICY,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[RunLock]:
    """Hold the run lock `s3://bucket/key` for the `with` block, or raise `ExportLocked`.

    `ttl_seconds` should exceed the longest run: past it, another run may take the lock. A
    request S3 does not answer is retried under `retry_policy`; once spent, the error is an
    `S3LockUnavailable` (`S3LockUnreachable` when nothing answered).
    """
    lock_object = _LockObject(s3_client, bucket, key, retry_policy, sleep)
    where = lock_object.where
    acquired_at = _now()
    expires_at = acquired_at + dt.timedelta(seconds=ttl_seconds)
    token = uuid.uuid4().hex  # makes our ETag ours alone
    body = json.dumps(
        {
            "owner": owner,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "token": token,
            "acquired_at": acquired_at.isoformat(),
            "expires_at": expires_at.isoformat(),
        },
        indent=1,
    ).encode()
    etag = None
    for attempt in (1, 2):
        etag = lock_object.put_if_absent(body)
        if etag is not None:
            break
        holder = lock_object.read_holder(ttl_seconds)
        if holder is not None and holder.token == token:
            # our own put, whose answer was lost and which the retry found in place
            etag = holder.etag
            break
        if holder is None:
            if attempt == 1:
                continue  # released between our put and our read: try once more
            raise ExportLocked(f"another mips-loader run is taking the lock {where} right now")
        if attempt == 1 and holder.expires_at is not None and holder.expires_at <= _now():
            logger.warning("taking over the expired run lock %s (%s)", where, holder.describe())
            lock_object.delete_if_unchanged(holder.etag)
            continue
        raise ExportLocked(f"another mips-loader run holds the lock {where}: {holder.describe()}")
    assert etag is not None
    lock = RunLock(bucket=bucket, key=key, etag=etag, owner=owner, expires_at=expires_at)
    try:
        yield lock
    finally:
        try:
            released = lock_object.delete_if_unchanged(etag)
        except (S3LockError, S3LockUnavailable) as exc:
            logger.warning("could not release the run lock: %s", exc)
        else:
            if not released:
                logger.warning(
                    "the run lock %s was no longer ours at exit (it expired and was taken "
                    "over, or was removed): left it alone",
                    where,
                )
