"""Destination URLs carry no credentials, and are shown without secrets.

Both decided on the raw text, never on a parse: `urlsplit` ends the host at the first '/', '?'
or '#', so a password holding one would look like a host and a path.
"""

from __future__ import annotations

import re

from loader.destinations.base import ConfigurationError


def redact_url(url: str) -> str:
    """The URL for messages: whatever sits before the last '@' becomes `user:***` or `***`.

    No parsing is involved, so a password holding '/', '?', '#' or '@' is hidden too; the user
    name is kept only when it is plainly one (letters, digits and `._~+-`).
    """
    scheme, separator, rest = url.partition("://")
    if not separator:
        scheme, rest = "", url
    userinfo, at, after = rest.rpartition("@")
    if not at:
        return url
    user, colon, _secret = userinfo.partition(":")
    safe_user = re.fullmatch(r"[A-Za-z0-9._~+-]+", user) is not None
    if safe_user and colon:
        hidden = f"{user}:***"
    elif safe_user and not colon:
        hidden = user
    else:
        hidden = "***"
    return f"{scheme}{separator}{hidden}@{after}"


def refuse_credentials_in_url(url: str, scheme: str) -> None:
    """Refuse a URL carrying a password (sftp) or any user information (s3, file).

    Decided on the raw text, not on urlsplit, which ends the host at the first '/', '?' or '#'
    and so misses a password containing one. The message never repeats the URL.
    """
    _, separator, rest = url.partition("://")
    if not separator:
        _, _, rest = url.partition(":")
    if "@" not in rest:
        return
    if scheme == "s3":
        raise ConfigurationError(
            "an s3:// URL must not carry credentials or a user name ('@' found): write it as "
            "s3://bucket/prefix and give credentials through the AWS chain (environment, "
            "profile or instance role); write an '@' in the prefix as %40"
        )
    if scheme == "file":
        raise ConfigurationError(
            "a file:// URL must not carry a user or password ('@' found): write it as "
            "file:///abs/dir; write an '@' in the path as %40"
        )
    userinfo = rest.rpartition("@")[0]
    authority_end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    if ":" in userinfo or "@" in rest[authority_end:]:
        raise ConfigurationError(
            "an sftp:// URL must not carry a password (a ':' before the '@', or an '@' after "
            "the host): write it as sftp://user@host[:port]/dir and set "
            "MIPS_SFTP_PASSWORD_FILE or MIPS_SFTP_KEY_FILE; write an '@' in the path as %40"
        )
