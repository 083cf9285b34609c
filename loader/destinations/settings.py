"""What a destination needs besides its URL, built once, from the environment (MIPS_* variables,
docs/destinations.md): timeouts, S3 encryption and transfer sizes, SFTP credentials and host
keys, the mode of delivered files."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from loader.destinations.base import ConfigurationError

MiB = 1024 * 1024
S3_SSE_CHOICES = ("AES256", "aws:kms")
DEFAULT_FILE_MODE = 0o600
# Bits a delivered file must never have: write or execute for group or others.
FORBIDDEN_MODE_BITS = 0o033


@dataclass(frozen=True)
class TransportSettings:
    """Everything a destination needs besides its URL; built once, from the environment."""

    connect_timeout: float = 30.0
    io_timeout: float = 120.0
    keepalive_interval: int = 30
    # Re-uploads inside one put_file when the stored object fails verification.
    verify_attempts: int = 2
    s3_endpoint_url: str | None = None
    s3_sse: str | None = None
    s3_kms_key_id: str | None = None
    s3_multipart_threshold: int = 64 * MiB
    s3_multipart_chunksize: int = 16 * MiB
    s3_max_concurrency: int = 4
    # Mode of files created on the SFTP server and in file:// directories (MIPS_FILE_MODE).
    file_mode: int = DEFAULT_FILE_MODE
    sftp_known_hosts: Path = field(default_factory=lambda: Path("~/.ssh/known_hosts"))
    sftp_key_file: Path | None = None
    sftp_key_passphrase: str | None = field(default=None, repr=False)
    sftp_password: str | None = field(default=None, repr=False)
    sftp_password_file: Path | None = None

    def __post_init__(self) -> None:
        if self.s3_sse is not None and self.s3_sse not in S3_SSE_CHOICES:
            raise ConfigurationError(
                f"S3 server-side encryption must be one of {', '.join(S3_SSE_CHOICES)}, "
                f"got {self.s3_sse!r} (MIPS_S3_SSE)"
            )
        if self.s3_kms_key_id and self.s3_sse != "aws:kms":
            raise ConfigurationError("MIPS_S3_KMS_KEY_ID is set but MIPS_S3_SSE is not aws:kms")
        check_file_mode(self.file_mode)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> TransportSettings:
        """Read the MIPS_* variables (see docs/destinations.md); `overrides` win over them."""
        env = os.environ if environ is None else environ

        def path_or_none(variable: str) -> Path | None:
            return Path(env[variable]).expanduser() if env.get(variable) else None

        from_environment = {
            "s3_endpoint_url": env.get("MIPS_S3_ENDPOINT_URL") or None,
            "s3_sse": env.get("MIPS_S3_SSE") or None,
            "s3_kms_key_id": env.get("MIPS_S3_KMS_KEY_ID") or None,
            "sftp_known_hosts": path_or_none("MIPS_SFTP_KNOWN_HOSTS")
            or Path("~/.ssh/known_hosts").expanduser(),
            "sftp_key_file": path_or_none("MIPS_SFTP_KEY_FILE"),
            "sftp_key_passphrase": env.get("MIPS_SFTP_KEY_PASSPHRASE") or None,
            "sftp_password": env.get("MIPS_SFTP_PASSWORD") or None,
            "sftp_password_file": path_or_none("MIPS_SFTP_PASSWORD_FILE"),
        }
        if env.get("MIPS_FILE_MODE"):
            from_environment["file_mode"] = parse_file_mode(env["MIPS_FILE_MODE"])
        return cls(**{**from_environment, **overrides})


def parse_file_mode(text: str) -> int:
    """MIPS_FILE_MODE: octal like 0600 or 0640; never write or execute for group or others."""
    digits = text.strip()
    digits = digits[2:] if digits.lower().startswith("0o") else digits
    if not re.fullmatch(r"[0-7]{3,4}", digits):
        raise ConfigurationError(
            f"MIPS_FILE_MODE must be an octal file mode like 0600 or 0640, got {text!r}"
        )
    return check_file_mode(int(digits, 8))


def check_file_mode(mode: int) -> int:
    if not 0 <= mode <= 0o777 or mode & FORBIDDEN_MODE_BITS or mode & 0o600 != 0o600:
        raise ConfigurationError(
            f"file mode {mode:04o} is not allowed (MIPS_FILE_MODE): the owner needs read and "
            "write, group and others may at most read (e.g. 0600, 0640, 0644)"
        )
    return mode
