"""The run's S3 store and SFTP server, opened from their URLs for a set of deliveries."""

from __future__ import annotations

from loader.destinations import open_destination
from loader.destinations.base import DeliveryError, Destination
from loader.errors import ConfigurationError, MipsError
from loader.marts.deliveries import Delivery


class StoreConfigError(ConfigurationError):
    """The run cannot start: a destination is missing or its URL unusable (exit code 2)."""


class StoreUnusable(MipsError):
    """A destination failed its preflight, so nothing was written. Of the failure's kind: a
    setting (configuration, exit 2: host key, credentials, no such bucket or directory), a
    store that cannot be reached (unreachable, exit 1), one that keeps failing (transient)."""


def s3_store_url(url: str, deliveries: list[Delivery]) -> str:
    """`s3://bucket` (no prefix) means the deliveries model's default prefix in that bucket."""
    if url.startswith("s3://") and not url[5:].strip("/").count("/"):
        prefixes = sorted({d.s3_default_prefix for d in deliveries})
        if len(prefixes) != 1:
            raise StoreConfigError(
                f"{url} names no prefix and the deliveries state "
                f"{', '.join(prefixes) or 'none'}: give the prefix in the URL"
            )
        return f"s3://{url[5:].strip('/')}/{prefixes[0].strip('/')}"
    return url


def open_stores(
    s3_url: str | None,
    sftp_url: str | None,
    deliveries: list[Delivery],
    *,
    stated: list[Delivery] | None = None,
) -> tuple[Destination, Destination | None]:
    """(S3 store, SFTP server or None when none of `deliveries` goes to SFTP), not entered.

    The S3 prefix a bare bucket URL gets is the one every `stated` delivery names (default:
    `deliveries`), so a selection without deliveries still finds the store."""
    if not s3_url:
        raise StoreConfigError("no S3 destination: pass --s3-url or set MIPS_S3_URL")
    needs_sftp = any(d.sftp_enabled for d in deliveries)
    if needs_sftp and not sftp_url:
        enabled = ", ".join(d.label for d in deliveries if d.sftp_enabled)
        raise StoreConfigError(
            f"SFTP is enabled for {enabled} but no SFTP destination was given: "
            "pass --sftp-url or set MIPS_SFTP_URL"
        )
    try:
        s3 = open_destination(s3_store_url(s3_url, stated or deliveries))
        sftp = open_destination(sftp_url) if needs_sftp else None
    except DeliveryError as exc:
        raise StoreConfigError(str(exc)) from None
    return s3, sftp
