"""What an AWS failure means, decided once for every AWS client: the S3 store, the S3 run lock
and Athena; and the sessions those clients come from (`session`).

`classify(exc)` gives the kind of a botocore failure: one of the error kinds of
`loader.errors` (transient, unreachable, configuration, terminal), or an answer the caller
reads (`NOT_FOUND`, `PRECONDITION_FAILED`). A caller turns the kind into its own error class;
it never keeps a list of codes of its own.
"""

from __future__ import annotations

import functools
from typing import Any

from loader.errors import CONFIGURATION, TERMINAL, TRANSIENT, UNREACHABLE

# Answers a caller reads rather than failures: the object is not there; a conditional
# request's condition did not hold (412), or another conditional write to the key is in flight
# (409).
NOT_FOUND = "not found"
PRECONDITION_FAILED = "precondition failed"

# Slow down: S3's SlowDown and 503, the APIs' throttling codes, and HTTP 429 from any of them.
THROTTLING_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestThrottledException",
        "ProvisionedThroughputExceededException",
        "BandwidthLimitExceeded",
    }
)
# The service failed on its side, or the request took too long: the same request may pass.
UNAVAILABLE_CODES = frozenset(
    {
        "InternalError",
        "InternalFailure",
        "InternalServerException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
        "RequestTimeTooSkewed",
    }
)
# The object (key) is not there. A missing bucket is not one of these: it is a wrong setting.
NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "404"})
PRECONDITION_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})
# The settings name what does not exist, or credentials AWS does not accept.
CONFIGURATION_CODES = frozenset(
    {
        "NoSuchBucket",
        "AccessDenied",
        "AccessDeniedException",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "ExpiredToken",
        "ExpiredTokenException",
        "AllAccessDisabled",
    }
)


def error_code(exc: BaseException) -> str:
    """The `Error.Code` of a botocore ClientError (`NoSuchKey`, `ThrottlingException`…), or ""."""
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def http_status(exc: BaseException) -> int | None:
    """The HTTP status of the answer, when the error carries one."""
    response = getattr(exc, "response", None) or {}
    return response.get("ResponseMetadata", {}).get("HTTPStatusCode")


def code_or_type(exc: BaseException) -> str:
    """The error code, or the exception's class name when AWS sent no code."""
    return error_code(exc) or type(exc).__name__


def is_aws_error(exc: BaseException) -> bool:
    """Whether `exc` is botocore's: an answer (ClientError) or a failure to get one."""
    from botocore.exceptions import BotoCoreError, ClientError

    return isinstance(exc, (BotoCoreError, ClientError))


def is_not_found(exc: BaseException) -> bool:
    """The object asked for is not there (not: the bucket is not there)."""
    return classify(exc) == NOT_FOUND


def classify(exc: BaseException) -> str:
    """The kind of a botocore failure (see the module's docstring)."""
    from botocore.exceptions import (
        ClientError,
        ConnectTimeoutError,
        CredentialRetrievalError,
        EndpointConnectionError,
        HTTPClientError,
        IncompleteReadError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
        ProfileNotFound,
        ProxyConnectionError,
    )
    from botocore.exceptions import ConnectionError as BotoConnectionError

    if isinstance(exc, ClientError):
        return _classify_answer(error_code(exc), http_status(exc) or 0)
    if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError, ProxyConnectionError)):
        return UNREACHABLE  # nothing answered: refused, timed out, name not resolved
    if isinstance(exc, (BotoConnectionError, HTTPClientError, IncompleteReadError)):
        return TRANSIENT  # an answer cut short, a read timeout, a dropped connection
    if isinstance(
        exc,
        (
            NoCredentialsError,
            PartialCredentialsError,
            CredentialRetrievalError,
            NoRegionError,
            ProfileNotFound,
        ),
    ):
        return CONFIGURATION
    from botocore.exceptions import FlexibleChecksumError

    if isinstance(exc, FlexibleChecksumError):
        return TRANSIENT  # the bytes received do not match the checksum sent with them
    return TERMINAL


def _classify_answer(code: str, status: int) -> str:
    # 501: the store does not implement the request, which will not change
    server_side = status >= 500 and status != 501
    if code in THROTTLING_CODES or code in UNAVAILABLE_CODES or status == 429 or server_side:
        return TRANSIENT
    if code in PRECONDITION_CODES or status in (409, 412):
        return PRECONDITION_FAILED
    if code in NOT_FOUND_CODES:
        return NOT_FOUND
    if code in CONFIGURATION_CODES or status in (401, 403):
        return CONFIGURATION
    return TERMINAL


@functools.cache
def _shared_data_loader():
    import botocore.loaders

    return botocore.loaders.create_loader()


def session(**options: Any):
    """A boto3 session (`options`: boto3.Session's) whose service models come from one
    loader per process. Each new botocore session otherwise parses the endpoint and S3 model
    JSON again (≈ 15 ms of CPU a session; the test suite makes hundreds); the models are
    read-only, credentials and configuration stay the session's own."""
    import boto3
    import botocore.session

    loader = _shared_data_loader()
    core = botocore.session.get_session()
    core.register_component("data_loader", loader)
    made = boto3.session.Session(botocore_session=core, **options)
    # each boto3 session appends its own data directory to the loader's search path: once
    loader.search_paths[:] = list(dict.fromkeys(loader.search_paths))
    return made
