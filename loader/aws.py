"""What an AWS error answer says, read the same way by the S3 store, the S3 lock and Athena."""

from __future__ import annotations


def error_code(exc: BaseException) -> str:
    """The `Error.Code` of a botocore ClientError (`NoSuchKey`, `ThrottlingException`…), or ""."""
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def http_status(exc: BaseException) -> int | None:
    """The HTTP status of the answer, when the error carries one."""
    response = getattr(exc, "response", None) or {}
    return response.get("ResponseMetadata", {}).get("HTTPStatusCode")
