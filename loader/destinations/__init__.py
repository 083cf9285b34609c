"""Where delivered files go: a local directory, S3, or an SFTP server, chosen by URL scheme.

    with open_destination("s3://bucket/business-operations/healthmonix") as destination:
        retrying(lambda: destination.put_file(path, "2025/CA/2026-01-15/data.csv",
                                              size=size, sha256=sha256))

See docs/destinations.md for URL forms, environment variables and error handling.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from loader.destinations.base import (
    ConfigurationError,
    DeliveryError,
    Destination,
    Digest,
    StoredObject,
    TerminalDeliveryError,
    TransientDeliveryError,
    UnreachableError,
)
from loader.destinations.settings import TransportSettings
from loader.destinations.urls import redact_url
from loader.retry import retrying

__all__ = [
    "ConfigurationError",
    "DeliveryError",
    "Destination",
    "Digest",
    "StoredObject",
    "TerminalDeliveryError",
    "TransientDeliveryError",
    "TransportSettings",
    "UnreachableError",
    "open_destination",
    "redact_url",
    "retrying",
]

SCHEMES = ("file", "s3", "sftp")


def open_destination(url: str, *, settings: TransportSettings | None = None) -> Destination:
    """The destination for `url`; settings default to TransportSettings.from_env()."""
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError:
        scheme = ""
    if scheme not in SCHEMES:
        raise ConfigurationError(
            f"unsupported destination URL {redact_url(url)}: "
            "expected file:///abs/dir, s3://bucket/prefix or sftp://user@host[:port]/dir"
        )
    settings = settings if settings is not None else TransportSettings.from_env()
    # Imported here so a file:// run never needs boto3 or paramiko to import cleanly.
    if scheme == "file":
        from loader.destinations.local import LocalDestination

        return LocalDestination(url, settings)
    if scheme == "s3":
        from loader.destinations.s3 import S3Destination

        return S3Destination(url, settings)
    from loader.destinations.sftp import SFTPDestination

    return SFTPDestination(url, settings)
