"""`s3://bucket/prefix`: objects at `prefix/name` in an S3 bucket (or an S3-compatible store).

Credentials come from boto3's default chain (env, profile, instance role); the region from the
usual AWS env/config; `MIPS_S3_ENDPOINT_URL` points the client at another endpoint (moto in
tests). A PUT is atomic at the key: readers see the old object or the whole new one.

Uploads go through boto3's transfer manager, which switches to a multipart upload above
`s3_multipart_threshold`. How an upload is verified, and why this way:

- The CRC32 comes from the caller when it took it in the pass that wrote the file and its
  SHA-256 (the export's unload does); otherwise we read the file once before uploading,
  computing both (the SHA-256 checked against what the caller said it is).
- The CRC32 is sent as a *full-object* checksum (`ChecksumCRC32`). For a single PUT S3 checks
  it against the bytes it received; for a multipart upload s3transfer (0.19 here) turns it into
  `ChecksumType=FULL_OBJECT` and S3 checks it when the parts are combined. SHA-256 cannot be
  used this way: S3 only offers SHA-256 per part (COMPOSITE) for multipart uploads, which
  would not be comparable with a hash of the file.
- The SHA-256 is stored as user metadata `sha256`, so `stat` can report it later.
- Afterwards `head_object` (with ChecksumMode=ENABLED) must report the local size, the same
  `sha256` metadata, and, when the store returns one, the same full-object CRC32. Stores that
  return no checksum (some S3-compatibles) are verified by size and metadata only.
- Tested against moto 5.2: moto recomputes the full-object CRC32 of a multipart upload from
  the parts it received (a corrupted part is caught by our comparison) but, unlike S3, does not
  reject a wrong checksum on a single PUT; S3's own rejection (BadDigest) is a terminal error.

Retries: botocore makes one attempt per request (`total_max_attempts=1`); what a failure is,
is `loader.aws.classify`'s (the same for S3, the run lock and Athena): refused and dropped
connections, timeouts, 5xx, 429 and throttling surface as TransientDeliveryError for
loader.retry, the only retry loop (plus upload_verified's re-upload after a failed
verification).

Server-side encryption: `s3_sse` (`MIPS_S3_SSE`) is None, "AES256" or "aws:kms" with an
optional `s3_kms_key_id` (`MIPS_S3_KMS_KEY_ID`); when set, the stored object must report it.
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlsplit

from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig, create_transfer_manager
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from loader import aws
from loader.destinations.base import (
    HASH_CHUNK_SIZE,
    ConfigurationError,
    DeliveryError,
    Destination,
    Digest,
    HashingReader,
    StartedPut,
    StoredObject,
    TerminalDeliveryError,
    TransientDeliveryError,
    UnreachableError,
    VerificationMismatch,
    check_name,
    upload_verified,
)
from loader.destinations.settings import TransportSettings
from loader.destinations.urls import refuse_credentials_in_url
from loader.errors import CONFIGURATION, TRANSIENT, UNREACHABLE

SHA256_METADATA_KEY = "sha256"


class S3Destination(Destination):
    # put_file stores the SHA-256 in the object's metadata; stat reads it back
    vouches_for_checksums = True

    def __init__(self, url: str, settings: TransportSettings):
        refuse_credentials_in_url(url, "s3")
        parts = urlsplit(url)
        if not parts.netloc:
            raise ConfigurationError(f"S3 URL must name a bucket, like s3://bucket/prefix: {url}")
        self.bucket = parts.netloc
        self.prefix = unquote(parts.path).strip("/")
        self.settings = settings
        self._client = aws.session().client(
            "s3",
            endpoint_url=settings.s3_endpoint_url,
            config=Config(
                connect_timeout=settings.connect_timeout,
                read_timeout=settings.io_timeout,
                # One attempt per request: loader.retry is the only retry loop.
                retries={"mode": "standard", "total_max_attempts": 1},
            ),
        )
        self._transfer_config = TransferConfig(
            multipart_threshold=settings.s3_multipart_threshold,
            multipart_chunksize=settings.s3_multipart_chunksize,
            max_concurrency=settings.s3_max_concurrency,
        )

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def put_file(
        self,
        local_path: Path,
        name: str,
        *,
        size: int,
        sha256: str,
        crc32: int | None = None,
        before_rename: Callable[[], object] | None = None,
    ) -> StoredObject:
        if before_rename is not None:
            before_rename()  # a PUT is atomic at the key: nothing is renamed
        key, expected, extra_args = self._prepare(local_path, name, size, sha256, crc32)
        return upload_verified(
            self,
            name,
            self.settings.verify_attempts,
            lambda: self._upload_once(local_path, name, key, expected, extra_args),
        )

    def start_put_file(
        self, local_path: Path, name: str, *, size: int, sha256: str, crc32: int | None = None
    ) -> StartedPut:
        """The upload handed to a transfer manager of its own: its threads send the file
        while the caller goes on; the first `result()` waits for them, then verifies. A
        failed first attempt goes on as `put_file` would (re-uploads, the caller's retries);
        cancelling (leaving the `with` early, Ctrl-C) stops the transfer as boto3's
        `upload_file` does on an interruption (a multipart upload is aborted)."""
        key, expected, extra_args = self._prepare(local_path, name, size, sha256, crc32)
        manager = create_transfer_manager(self._client, self._transfer_config)
        try:
            with self._mapped_errors(name):
                transfer = manager.upload(str(local_path), self.bucket, key, extra_args=extra_args)
        except BaseException as error:
            _cancel_transfer(manager, error)
            raise
        waiting = [transfer]

        def upload_once() -> StoredObject:
            if not waiting:
                return self._upload_once(local_path, name, key, expected, extra_args)
            with self._mapped_errors(name):
                _finish_transfer(manager, waiting.pop())
                return self._verify(name, key, expected, extra_args["ChecksumCRC32"])

        def cancel(error: BaseException | None) -> None:
            if waiting:
                waiting.clear()
                _cancel_transfer(
                    manager, error or _LeftUnfinished("the upload was left unfinished")
                )

        return StartedPut(
            put=lambda: self.put_file(local_path, name, size=size, sha256=sha256, crc32=crc32),
            finish=lambda: upload_verified(self, name, self.settings.verify_attempts, upload_once),
            cancel=cancel,
        )

    def _prepare(
        self, local_path: Path, name: str, size: int, sha256: str, crc32: int | None
    ) -> tuple[str, Digest, dict]:
        key = self._key(name)
        expected = Digest(size, sha256.lower())
        if crc32 is None:
            actual, encoded_crc32 = _digest_and_crc32(local_path)
            self._check_source(local_path, name, expected, actual)
        else:
            encoded_crc32 = _encode_crc32(crc32)
        return key, expected, self._upload_args(expected, encoded_crc32)

    def _upload_once(
        self, local_path: Path, name: str, key: str, expected: Digest, extra_args: dict
    ) -> StoredObject:
        with self._mapped_errors(name):
            self._client.upload_file(
                str(local_path),
                self.bucket,
                key,
                ExtraArgs=extra_args,
                Config=self._transfer_config,
            )
            return self._verify(name, key, expected, extra_args["ChecksumCRC32"])

    def put_bytes(self, name: str, data: bytes) -> StoredObject:
        key = self._key(name)
        expected = Digest.of_bytes(data)
        crc32 = _encode_crc32(zlib.crc32(data))

        def upload_once() -> StoredObject:
            with self._mapped_errors(name):
                self._client.put_object(
                    Bucket=self.bucket, Key=key, Body=data, **self._upload_args(expected, crc32)
                )
                return self._verify(name, key, expected, crc32)

        return upload_verified(self, name, self.settings.verify_attempts, upload_once)

    def get_bytes(self, name: str) -> bytes | None:
        with self._mapped_errors(name):
            try:
                response = self._client.get_object(Bucket=self.bucket, Key=self._key(name))
            except ClientError as error:
                if aws.is_not_found(error):
                    return None
                raise
            return response["Body"].read()

    def stat(self, name: str) -> StoredObject | None:
        with self._mapped_errors(name):
            try:
                head = self._client.head_object(Bucket=self.bucket, Key=self._key(name))
            except ClientError as error:
                if aws.is_not_found(error):
                    return None
                raise
        return StoredObject(
            name,
            head["ContentLength"],
            head.get("LastModified"),
            head.get("Metadata", {}).get(SHA256_METADATA_KEY),
        )

    def list(self, prefix: str = "") -> Iterator[StoredObject]:
        root = f"{self.prefix}/" if self.prefix else ""
        paginator = self._client.get_paginator("list_objects_v2")
        with self._mapped_errors(prefix or None):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=root + prefix):
                for entry in page.get("Contents", []):
                    yield StoredObject(
                        entry["Key"][len(root) :], entry["Size"], entry.get("LastModified"), None
                    )

    def read_digest(self, name: str) -> Digest | None:
        with self._mapped_errors(name):
            try:
                response = self._client.get_object(Bucket=self.bucket, Key=self._key(name))
            except ClientError as error:
                if aws.is_not_found(error):
                    return None
                raise
            digest = hashlib.sha256()
            size = 0
            body = response["Body"]
            try:
                for chunk in body.iter_chunks(HASH_CHUNK_SIZE):
                    digest.update(chunk)
                    size += len(chunk)
            finally:
                body.close()
        return Digest(size, digest.hexdigest())

    def preflight(self) -> None:
        """The bucket exists and these credentials reach it: HEAD the bucket, list one key."""
        for check in (
            lambda: self._client.head_bucket(Bucket=self.bucket),
            lambda: self._client.list_objects_v2(
                Bucket=self.bucket, Prefix=f"{self.prefix}/" if self.prefix else "", MaxKeys=1
            ),
        ):
            with self._mapped_errors(None):
                try:
                    check()
                except ClientError as error:
                    self._raise_preflight_error(error)

    def _raise_preflight_error(self, error: ClientError) -> None:
        kind = aws.classify(error)
        if kind == TRANSIENT:
            raise error
        code = aws.error_code(error)
        status = aws.http_status(error) or 0
        if code in ("404", "NoSuchBucket", "NotFound"):
            reason = f"bucket {self.bucket} does not exist"
        elif status == 403 or code in ("AccessDenied", "InvalidAccessKeyId", "Forbidden"):
            reason = f"access to bucket {self.bucket} denied with these credentials ({code})"
        else:
            reason = f"bucket {self.bucket} is not usable: {code} (HTTP {status})"
        raise self._error(ConfigurationError, reason) from None

    def close(self) -> None:
        self._client.close()

    def _key(self, name: str) -> str:
        check_name(name, self.describe())
        return f"{self.prefix}/{name}" if self.prefix else name

    def _upload_args(self, expected: Digest, crc32: str) -> dict:
        arguments = {
            "ChecksumAlgorithm": "CRC32",
            "ChecksumCRC32": crc32,
            "Metadata": {SHA256_METADATA_KEY: expected.sha256},
        }
        if self.settings.s3_sse:
            arguments["ServerSideEncryption"] = self.settings.s3_sse
        if self.settings.s3_kms_key_id:
            arguments["SSEKMSKeyId"] = self.settings.s3_kms_key_id
        return arguments

    def _verify(self, name: str, key: str, expected: Digest, crc32: str) -> StoredObject:
        head = self._client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        if head["ContentLength"] != expected.size:
            raise VerificationMismatch(
                f"stored size {head['ContentLength']}, expected {expected.size}"
            )
        stored_crc32 = head.get("ChecksumCRC32")
        is_full_object = head.get("ChecksumType", "FULL_OBJECT") == "FULL_OBJECT"
        if stored_crc32 is not None and is_full_object and stored_crc32 != crc32:
            raise VerificationMismatch(f"stored CRC32 {stored_crc32}, expected {crc32}")
        stored_sha256 = head.get("Metadata", {}).get(SHA256_METADATA_KEY)
        if stored_sha256 != expected.sha256:
            raise VerificationMismatch(f"stored sha256 {stored_sha256}, expected {expected.sha256}")
        if self.settings.s3_sse and head.get("ServerSideEncryption") != self.settings.s3_sse:
            raise self._error(
                TerminalDeliveryError,
                f"stored with encryption {head.get('ServerSideEncryption')!r}, "
                f"asked for {self.settings.s3_sse!r}",
                name,
            )
        return StoredObject(name, expected.size, head.get("LastModified"), expected.sha256)

    @contextmanager
    def _mapped_errors(self, name: str | None):
        """Turn boto3's exceptions into transient or terminal delivery errors."""
        try:
            yield
        except DeliveryError:
            raise
        except S3UploadFailedError as error:
            # boto3 re-raises the ClientError as this, keeping the original only as context.
            original = error.__context__
            raise self._classify(original if original is not None else error, name) from error
        except (BotoCoreError, ClientError) as error:
            raise self._classify(error, name) from error
        except OSError as error:
            raise self._error(TerminalDeliveryError, f"local file error: {error}", name) from error

    def _classify(self, error: BaseException, name: str | None) -> DeliveryError:
        kind = aws.classify(error)
        if isinstance(error, ClientError):
            code = aws.error_code(error)
            status = aws.http_status(error) or 0
            message = error.response.get("Error", {}).get("Message", "")
            reason = f"S3 {error.operation_name} failed: {code} (HTTP {status}) {message}".rstrip()
        elif kind == UNREACHABLE:
            reason = f"S3 unreachable: {error}"
        elif kind == TRANSIENT:
            reason = f"S3 connection failed: {error}"
        elif kind == CONFIGURATION:
            reason = f"no usable AWS credentials or region: {error}"
        else:
            reason = f"S3 request failed: {error}"
        return self._error(_ERRORS.get(kind, TerminalDeliveryError), reason, name)


# What each kind of AWS failure is for the store (not found and a failed precondition, which
# the store does not ask for, are terminal).
_ERRORS: dict[str, type[DeliveryError]] = {
    TRANSIENT: TransientDeliveryError,
    UNREACHABLE: UnreachableError,
    CONFIGURATION: ConfigurationError,
}


class _LeftUnfinished(Exception):
    """Why a started upload nobody waited for is cancelled."""


def _finish_transfer(manager, transfer) -> None:
    """Wait for a started upload; whatever stops the wait (its error, Ctrl-C) cancels the rest."""
    try:
        transfer.result()
    except BaseException as error:
        _cancel_transfer(manager, error)
        raise
    manager.shutdown()


def _cancel_transfer(manager, error: BaseException) -> None:
    # the transfer manager's own exit: cancel what is under way, abort a multipart upload
    manager.__exit__(type(error), error, None)


def _digest_and_crc32(path: Path) -> tuple[Digest, str]:
    """One pass over the file for both its SHA-256 and its CRC32."""
    crc32 = 0
    with open(path, "rb") as source:
        reader = HashingReader(source)
        while chunk := reader.read(HASH_CHUNK_SIZE):
            crc32 = zlib.crc32(chunk, crc32)
    return reader.digest(), _encode_crc32(crc32)


def _encode_crc32(value: int) -> str:
    # S3 wants the big-endian 4 bytes, base64-encoded.
    return base64.b64encode(value.to_bytes(4, "big")).decode("ascii")
