"""The run lock that keeps two exports apart, for either engine.

PostgreSQL targets hold a session advisory lock (`export_lock`). Athena has none, so its lock
(`s3_run_lock`) is an S3 object written with `If-None-Match: *` (S3 answers 412 when it already
exists). Its JSON body says who holds it and until when. A lock past its `expires_at` (a
crashed run) is removed with `If-Match: <its ETag>`, so of two runs that both find it expired
only one wins, and taken once more. At exit the lock is deleted only if its ETag is still ours.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from loader.aws import error_code, http_status
from loader.errors import TerminalError

logger = logging.getLogger(__name__)

DEFAULT_TTL_SECONDS = 6 * 3600
# Answers of a store that does not accept a condition on DeleteObject.
_CONDITION_UNSUPPORTED = frozenset({"NotImplemented", "InvalidArgument", "InvalidRequest"})
# The advisory lock key of a PostgreSQL export: any constant works, as long as every loader
# on the database uses the same one.
EXPORT_LOCK_KEY = 7_342_610_221


class ExportLocked(TerminalError):
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
    """The lock could not be read, taken or released for a reason other than another holder
    (no bucket, access denied). A lock held by another run is `ExportLocked`,
    also a `TerminalError`: the run stops, nothing is retried."""


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

    def describe(self) -> str:
        until = self.expires_at.isoformat() if self.expires_at else "an unknown time"
        return (
            f"held by {self.owner} on {self.host} (pid {self.pid}) since {self.acquired_at}, "
            f"until {until}"
        )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def _precondition_failed(exc: Exception) -> bool:
    # 409 ConditionalRequestConflict: another conditional write to the key is in flight.
    conflicts = ("PreconditionFailed", "ConditionalRequestConflict")
    return error_code(exc) in conflicts or http_status(exc) in (412, 409)


def _not_found(exc: Exception) -> bool:
    return error_code(exc) in ("NoSuchKey", "404", "NotFound") or http_status(exc) == 404


def _same_etag(a: str, b: str) -> bool:
    return a.strip('"') == b.strip('"')


def _client_error():
    from botocore.exceptions import ClientError

    return ClientError


def _read_holder(s3_client, bucket: str, key: str, ttl_seconds: int) -> _Holder | None:
    ClientError = _client_error()
    try:
        response = s3_client.get_object(Bucket=bucket, Key=key)
        body = response["Body"].read(64 * 1024)
    except ClientError as exc:
        if _not_found(exc):
            return None
        raise S3LockError(
            f"cannot read the run lock s3://{bucket}/{key}: {error_code(exc)}"
        ) from exc
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
    )


def _delete_if_unchanged(s3_client, bucket: str, key: str, etag: str) -> bool:
    """Delete the object if its ETag is still `etag`; False if it changed or is gone."""
    ClientError = _client_error()
    try:
        s3_client.delete_object(Bucket=bucket, Key=key, IfMatch=etag)
        return True
    except ClientError as exc:
        if _precondition_failed(exc) or _not_found(exc):
            return False
        if error_code(exc) not in _CONDITION_UNSUPPORTED:
            raise S3LockError(
                f"cannot delete the run lock s3://{bucket}/{key}: {error_code(exc)}"
            ) from exc
    # This store ignores conditions on delete: compare, then delete (a narrow race remains).
    try:
        current = s3_client.head_object(Bucket=bucket, Key=key)["ETag"]
        if not _same_etag(current, etag):
            return False
        s3_client.delete_object(Bucket=bucket, Key=key)
        return True
    except ClientError as exc:
        if _not_found(exc):
            return False
        raise S3LockError(
            f"cannot delete the run lock s3://{bucket}/{key}: {error_code(exc)}"
        ) from exc


@contextlib.contextmanager
def s3_run_lock(
    s3_client,
    bucket: str,
    key: str,
    *,
    ttl_seconds: int = DEFAULT_TTL_SECONDS,
    owner: str,
) -> Iterator[RunLock]:
    """Hold the run lock `s3://bucket/key` for the `with` block, or raise `ExportLocked`.

    `ttl_seconds` should exceed the longest run: past it, another run may take the lock.
    """
    # Imported here: loader.run.export will use this module, and must not import it circularly.
    ClientError = _client_error()
    acquired_at = _now()
    expires_at = acquired_at + dt.timedelta(seconds=ttl_seconds)
    body = json.dumps(
        {
            "owner": owner,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "token": uuid.uuid4().hex,  # makes our ETag ours alone
            "acquired_at": acquired_at.isoformat(),
            "expires_at": expires_at.isoformat(),
        },
        indent=1,
    ).encode()
    where = f"s3://{bucket}/{key}"
    etag = None
    for attempt in (1, 2):
        try:
            response = s3_client.put_object(
                Bucket=bucket,
                Key=key,
                Body=body,
                ContentType="application/json",
                IfNoneMatch="*",
            )
            etag = response["ETag"]
            break
        except ClientError as exc:
            if not _precondition_failed(exc):
                raise S3LockError(f"cannot take the run lock {where}: {error_code(exc)}") from exc
        holder = _read_holder(s3_client, bucket, key, ttl_seconds)
        if holder is None:
            if attempt == 1:
                continue  # released between our put and our read: try once more
            raise ExportLocked(f"another mips-loader run is taking the lock {where} right now")
        if attempt == 1 and holder.expires_at is not None and holder.expires_at <= _now():
            logger.warning("taking over the expired run lock %s (%s)", where, holder.describe())
            _delete_if_unchanged(s3_client, bucket, key, holder.etag)
            continue
        raise ExportLocked(f"another mips-loader run holds the lock {where}: {holder.describe()}")
    assert etag is not None
    lock = RunLock(bucket=bucket, key=key, etag=etag, owner=owner, expires_at=expires_at)
    try:
        yield lock
    finally:
        try:
            released = _delete_if_unchanged(s3_client, bucket, key, etag)
        except S3LockError as exc:
            logger.warning("could not release the run lock: %s", exc)
        else:
            if not released:
                logger.warning(
                    "the run lock %s was no longer ours at exit (it expired and was taken "
                    "over, or was removed): left it alone",
                    where,
                )
