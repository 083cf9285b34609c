"""The destination layer: one conformance suite over file, S3 (moto) and SFTP (asyncssh), then
each transport's own failure modes, and an upload to a real OpenSSH server."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
import subprocess
import sys
import time
import uuid
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from loader.destinations import (
    ConfigurationError,
    Destination,
    Digest,
    TerminalDeliveryError,
    TransientDeliveryError,
    TransportSettings,
    UnreachableError,
    open_destination,
    redact_url,
    retrying,
)
from loader.destinations.settings import parse_file_mode
from loader.destinations.temporary_names import STALE_PART_AGE_SECONDS, host_tag
from loopback.s3 import create_bucket, fake_aws_environment, s3_client
from loopback.ssh import (
    SshdUnavailable,
    free_port,
    make_ssh_key,
    openssh_sftp_server,
    write_known_hosts,
)
from tests.support.transport_servers import SftpFaults, asyncssh_sftp_server, s3_fault_proxy

MiB = 1024 * 1024
S3_NAME = "2025/CA/2026-01-15/data.csv"
SFTP_NAME = "Quality_21742_MlUGF8grFd.csv"


@dataclass
class LocalFile:
    path: Path
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def local_file(directory: Path, size: int, name: str = "upload.csv") -> LocalFile:
    data = os.urandom(size)
    path = directory / name
    path.write_bytes(data)
    return LocalFile(path, data)


def put(destination: Destination, source: LocalFile, name: str):
    return destination.put_file(source.path, name, size=source.size, sha256=source.sha256)


def no_sleep(delays: list[float] | None = None):
    return (delays if delays is not None else []).append


def files_under(root: Path) -> list[str]:
    return sorted(path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file())


# --- servers and settings -----------------------------------------------------------------------


@pytest.fixture
def aws_environment(monkeypatch, moto_endpoint, tmp_path):
    for name, value in fake_aws_environment(moto_endpoint, tmp_path).items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return moto_endpoint


@pytest.fixture
def bucket(aws_environment):
    return create_bucket(aws_environment, f"mips-{uuid.uuid4().hex[:12]}")


@pytest.fixture(scope="session")
def ssh_keys(tmp_path_factory):
    directory = tmp_path_factory.mktemp("ssh-keys")
    return {
        "host": make_ssh_key(directory / "host_key"),
        "other_host": make_ssh_key(directory / "other_host_key"),
        "client": make_ssh_key(directory / "client_key"),
    }


@dataclass
class SftpSetup:
    url: str
    root: Path
    faults: SftpFaults
    known_hosts: Path
    settings: TransportSettings
    host: str
    port: int


@pytest.fixture
def sftp(tmp_path, ssh_keys):
    root = tmp_path / "sftp-root"
    faults = SftpFaults()
    with asyncssh_sftp_server(
        root,
        authorized_client_key=ssh_keys["client"].public_key,
        host_key=ssh_keys["host"].private_path,
        faults=faults,
        password="correct horse",
    ) as server:
        known_hosts = write_known_hosts(
            tmp_path / "known_hosts", server.host, server.port, server.host_public_key
        )
        settings = TransportSettings(
            sftp_known_hosts=known_hosts,
            sftp_key_file=ssh_keys["client"].private_path,
            connect_timeout=5,
            io_timeout=10,
        )
        yield SftpSetup(
            f"sftp://registry@{server.host}:{server.port}/",
            root,
            faults,
            known_hosts,
            settings,
            server.host,
            server.port,
        )


@pytest.fixture(params=["file", "s3", "sftp"])
def destination(request, tmp_path):
    if request.param == "file":
        opened = open_destination(f"file://{tmp_path}/delivered", settings=TransportSettings())
    elif request.param == "s3":
        bucket = request.getfixturevalue("bucket")
        opened = open_destination(f"s3://{bucket}/business-operations/healthmonix")
    else:
        setup = request.getfixturevalue("sftp")
        opened = open_destination(setup.url, settings=setup.settings)
    with opened:
        yield opened


# --- conformance: every destination behaves the same ---------------------------------------------


def test_put_file_round_trip_is_byte_identical(destination, tmp_path):
    source = local_file(tmp_path, 300_000)

    stored = put(destination, source, S3_NAME)

    assert (stored.name, stored.size) == (S3_NAME, source.size)
    assert destination.get_bytes(S3_NAME) == source.data
    assert destination.stat(S3_NAME).size == source.size
    assert [entry.name for entry in destination.list()] == [S3_NAME]


def test_a_started_put_ends_as_put_file_and_a_retry_uploads_again(destination, tmp_path):
    """start_put_file (the export's S3 leg, begun before the SFTP one): the first result() is
    the stored object, a second (a retry) stores the same bytes again."""
    source = local_file(tmp_path, 300_000)
    with destination.start_put_file(
        source.path, S3_NAME, size=source.size, sha256=source.sha256
    ) as started:
        first = started.result()
        second = started.result()
    assert (first.name, first.size) == (second.name, second.size) == (S3_NAME, source.size)
    assert destination.get_bytes(S3_NAME) == source.data
    assert [entry.name for entry in destination.list()] == [S3_NAME]


def test_what_before_rename_raises_leaves_nothing_under_either_name(destination, tmp_path):
    source = local_file(tmp_path, 50_000)
    calls = []

    def refuse():
        calls.append(destination.get_bytes(S3_NAME))
        raise RuntimeError("the other leg failed")

    with pytest.raises(RuntimeError, match="the other leg failed"):
        destination.put_file(
            source.path, S3_NAME, size=source.size, sha256=source.sha256, before_rename=refuse
        )
    assert calls == [None]
    assert list(destination.list()) == []


def test_flat_sftp_style_name(destination, tmp_path):
    source = local_file(tmp_path, 1000)
    put(destination, source, SFTP_NAME)
    assert destination.get_bytes(SFTP_NAME) == source.data


def test_put_bytes_and_get_bytes(destination):
    stored = destination.put_bytes("manifests/run.json", b'{"rows": 3}\n')
    assert stored.size == 12
    assert destination.get_bytes("manifests/run.json") == b'{"rows": 3}\n'
    assert destination.stat("manifests/run.json").size == 12


def test_overwrite_replaces_the_whole_object(destination, tmp_path):
    put(destination, local_file(tmp_path, 50_000, "first.csv"), S3_NAME)
    second = local_file(tmp_path, 20_000, "second.csv")

    put(destination, second, S3_NAME)

    assert destination.get_bytes(S3_NAME) == second.data
    assert [(entry.name, entry.size) for entry in destination.list()] == [(S3_NAME, 20_000)]


def test_absent_names(destination):
    assert destination.get_bytes("2025/CA/nothing.csv") is None
    assert destination.stat("2025/CA/nothing.csv") is None
    assert list(destination.list("2025/")) == []


def test_list_is_recursive_sorted_and_relative(destination):
    for name in ["2025/CA/2026-01-15/data.csv", "2025/AZ/2026-01-15/data.csv", "2024/CA/x.csv"]:
        destination.put_bytes(name, name.encode())

    assert [entry.name for entry in destination.list()] == [
        "2024/CA/x.csv",
        "2025/AZ/2026-01-15/data.csv",
        "2025/CA/2026-01-15/data.csv",
    ]
    assert [entry.name for entry in destination.list("2025/")] == [
        "2025/AZ/2026-01-15/data.csv",
        "2025/CA/2026-01-15/data.csv",
    ]
    assert [entry.name for entry in destination.list("2025/C")] == ["2025/CA/2026-01-15/data.csv"]
    assert all(entry.modified is not None for entry in destination.list())


@pytest.mark.parametrize("name", ["../escape.csv", "/abs.csv", "a//b.csv", "a/./b.csv", ""])
def test_names_cannot_escape_the_root(destination, name):
    with pytest.raises(ConfigurationError):
        destination.put_bytes(name, b"x")


def test_a_file_that_does_not_match_its_description_is_not_delivered(destination, tmp_path):
    source = local_file(tmp_path, 10_000)

    with pytest.raises(TerminalDeliveryError, match="does not match"):
        destination.put_file(source.path, S3_NAME, size=source.size, sha256="0" * 64)

    assert list(destination.list()) == []


def test_read_digest_streams_the_stored_bytes(destination, tmp_path):
    source = local_file(tmp_path, 2 * MiB + 17)
    put(destination, source, S3_NAME)
    destination.put_bytes("empty.json", b"")

    assert destination.read_digest(S3_NAME) == Digest(source.size, source.sha256)
    assert destination.read_digest("empty.json") == Digest.of_bytes(b"")
    assert destination.read_digest("2025/absent.csv") is None


def test_preflight_passes_and_writes_nothing(destination):
    destination.preflight()
    assert list(destination.list()) == []


def test_describe_and_errors_name_the_destination(destination):
    with pytest.raises(ConfigurationError) as raised:
        destination.put_bytes("../x", b"x")
    assert destination.describe() in str(raised.value)


# --- retrying -----------------------------------------------------------------------------------


def test_retrying_retries_transient_errors_with_growing_capped_delays():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 4:
            raise TransientDeliveryError("dropped", destination="s3://b", name="n")
        return "done"

    delays: list[float] = []
    assert retrying(flaky, base_delay=1, max_delay=2.5, sleep=delays.append) == "done"
    assert len(calls) == 4
    assert 0.5 <= delays[0] <= 1 and 1 <= delays[1] <= 2 and 1.25 <= delays[2] <= 2.5


def test_retrying_gives_up_with_the_last_transient_error():
    def always_down():
        raise TransientDeliveryError("still down")

    delays: list[float] = []
    with pytest.raises(TransientDeliveryError, match="still down"):
        retrying(always_down, attempts=3, sleep=delays.append)
    assert len(delays) == 2


def test_retrying_never_retries_terminal_errors():
    calls = []

    def denied():
        calls.append(1)
        raise TerminalDeliveryError("denied")

    with pytest.raises(TerminalDeliveryError):
        retrying(denied, sleep=no_sleep())
    assert len(calls) == 1


# --- URLs and secrets ---------------------------------------------------------------------------


def test_redact_url_hides_only_the_password():
    assert redact_url("sftp://user:s3cret@host:2222/dir") == "sftp://user:***@host:2222/dir"
    assert redact_url("sftp://user@host/dir") == "sftp://user@host/dir"


@pytest.mark.parametrize(
    ("url", "secret", "redacted"),
    [
        ("sftp://u:hun/ter2@127.0.0.1:22/x", "ter2", "sftp://u:***@127.0.0.1:22/x"),
        ("s3://AKIAXXXX:secret/x@bucket/p", "secret", "s3://AKIAXXXX:***@bucket/p"),
        ("sftp://u:a?b#c@d@host/x", "a?b#c@d", "sftp://u:***@host/x"),
        ("sftp://pa/ss@host/x", "pa/ss", "sftp://***@host/x"),
        ("ftp://u:p#w@host/", "p#w", "ftp://u:***@host/"),
        ("s3:AKIA:s3cret@bucket", "s3cret", "s3:***@bucket"),
        ("sftp://[::1:x/y@h", "x/y", "sftp://***@h"),
    ],
)
def test_redact_url_never_depends_on_parsing(url, secret, redacted):
    assert redact_url(url) == redacted
    assert secret not in redact_url(url)


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("sftp://u:hun/ter2@127.0.0.1:22/x", "hun/ter2"),
        ("sftp://registry:hunter2@127.0.0.1:22/in", "hunter2"),
        ("sftp://u:p?ss#w@rd@127.0.0.1/x", "p?ss#w@rd"),
        ("sftp://u:p@ss@127.0.0.1/x", "p@ss"),
        ("sftp://hun/ter2@127.0.0.1/x", "hun/ter2"),
        ("sftp://u:@127.0.0.1/x", "u:@"),
        ("s3://AKIAXXXX:secret/x@bucket/p", "secret/x"),
        ("s3://AKIA:hunter2@bucket/prefix", "hunter2"),
        ("s3://AKIA@bucket/prefix", "AKIA"),
        ("s3://bucket/p?x=1#frag@y", "frag@y"),
        ("file://u:s3cr/et@localhost/tmp/x", "s3cr/et"),
        ("file:///tmp/a:b@c", "a:b@c"),
    ],
)
def test_credentials_in_urls_are_refused_without_echoing_them(url, secret):
    with pytest.raises(ConfigurationError) as raised:
        open_destination(url, settings=TransportSettings())
    message = str(raised.value)
    assert secret not in message and url not in message and "\n" not in message
    scheme = url.partition(":")[0]
    assert f"{scheme}://" in message


def test_a_user_without_password_in_an_sftp_url_is_fine():
    destination = open_destination(
        "sftp://mips.user@127.0.0.1:2222/in%40box", settings=TransportSettings()
    )
    assert destination.describe() == "sftp://mips.user@127.0.0.1:2222/in@box"


@pytest.mark.parametrize(
    "url",
    ["ftp://user:s3cret-pw@host/dir", "http://x:s3cret-pw@h/", "not a url s3cret-pw", ""],
)
def test_unknown_schemes_are_configuration_errors_without_secrets(url):
    with pytest.raises(ConfigurationError) as raised:
        open_destination(url, settings=TransportSettings())
    if url.startswith(("ftp", "http")):
        assert "s3cret-pw" not in str(raised.value)
        assert "***" in str(raised.value)


@pytest.mark.parametrize(
    "url", ["file://relative/dir", "file:relative/dir", "file:///tmp/../etc", "sftp://host/dir"]
)
def test_malformed_urls_are_configuration_errors(url):
    with pytest.raises(ConfigurationError):
        open_destination(url, settings=TransportSettings())


def test_settings_come_from_the_environment(tmp_path):
    settings = TransportSettings.from_env(
        {
            "MIPS_S3_SSE": "aws:kms",
            "MIPS_S3_KMS_KEY_ID": "alias/mips",
            "MIPS_S3_ENDPOINT_URL": "http://127.0.0.1:9",
            "MIPS_SFTP_KNOWN_HOSTS": str(tmp_path / "kh"),
            "MIPS_SFTP_KEY_FILE": str(tmp_path / "key"),
            "MIPS_SFTP_PASSWORD": "hunter2",
        }
    )
    assert (settings.s3_sse, settings.s3_kms_key_id) == ("aws:kms", "alias/mips")
    assert settings.s3_endpoint_url == "http://127.0.0.1:9"
    assert settings.sftp_known_hosts == tmp_path / "kh"
    assert settings.sftp_key_file == tmp_path / "key"
    assert "hunter2" not in repr(settings)


@pytest.mark.parametrize(("text", "mode"), [("0600", 0o600), ("0640", 0o640), ("644", 0o644)])
def test_file_mode_comes_from_the_environment(text, mode):
    assert TransportSettings.from_env({"MIPS_FILE_MODE": text}).file_mode == mode
    assert TransportSettings.from_env({}).file_mode == 0o600


@pytest.mark.parametrize(
    "text", ["0660", "0606", "0755", "0601", "0400", "rw-------", "0x1a4", "8"]
)
def test_file_modes_granting_too_much_or_not_octal_are_refused(text):
    with pytest.raises(ConfigurationError, match="MIPS_FILE_MODE"):
        TransportSettings.from_env({"MIPS_FILE_MODE": text})
    with pytest.raises(ConfigurationError):
        parse_file_mode(text)


def test_unknown_sse_setting_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="MIPS_S3_SSE"):
        TransportSettings.from_env({"MIPS_S3_SSE": "rot13"})


# --- local directory ----------------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "umask"), [(0o600, 0o022), (0o640, 0o077), (0o644, 0o022)])
def test_local_files_get_the_mode_and_leave_no_temporary_files(tmp_path, mode, umask):
    root = tmp_path / "out"
    settings = TransportSettings(file_mode=mode)
    old_umask = os.umask(umask)
    try:
        with open_destination(f"file://{root}", settings=settings) as destination:
            stored = put(destination, local_file(tmp_path, 5000), S3_NAME)
    finally:
        os.umask(old_umask)

    assert stat.S_IMODE((root / S3_NAME).stat().st_mode) == mode
    assert files_under(root) == [S3_NAME]
    assert stored.checksum == hashlib.sha256((root / S3_NAME).read_bytes()).hexdigest()


def _part(directory: Path, host: str, pid: int, started: float, final: str = "data.csv") -> Path:
    path = directory / f".{final}.mipspart-{host}-{pid}-{int(started):010d}-0123abcd.part"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"partial")
    return path


def test_local_stale_temporary_files_of_ours_are_removed_foreign_kept(tmp_path):
    root = tmp_path / "out"
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    now = time.time()
    old = now - STALE_PART_AGE_SECONDS - 60
    other = "0badc0de" if host_tag() != "0badc0de" else "0badc0df"
    stale = [
        _part(root, host_tag(), child.pid, now),
        _part(root / "2025/CA", host_tag(), child.pid, now),
        _part(root, other, 4242, old, "x.csv"),
    ]
    os.utime(stale[2], (old, old))
    kept = [
        _part(root, host_tag(), os.getpid(), now, "mine.csv"),
        _part(root, other, 4243, now, "theirs.csv"),
    ]
    foreign = [root / ".data.csv.a1b2c3d4e5f6.part", root / "2025/CA/.data.csv.mipspart-x.part"]
    for path in foreign:
        path.write_bytes(b"not ours")

    with open_destination(f"file://{root}", settings=TransportSettings()) as destination:
        destination.preflight()  # sweeps the root
        assert not stale[0].exists() and not stale[2].exists() and stale[1].exists()
        destination.put_bytes("2025/CA/data.csv", b"new")  # sweeps 2025/CA
    assert not stale[1].exists()
    assert all(path.exists() for path in kept + foreign)


def test_local_preflight_creates_the_directory_or_says_why_not(tmp_path):
    root = tmp_path / "new" / "dir"
    with open_destination(f"file://{root}", settings=TransportSettings()) as destination:
        destination.preflight()
    assert root.is_dir() and list(root.iterdir()) == []
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with (
        open_destination(f"file://{blocker}/dir", settings=TransportSettings()) as destination,
        pytest.raises(ConfigurationError, match="not usable") as raised,
    ):
        destination.preflight()
    assert "\n" not in str(raised.value)


def test_local_symlinks_cannot_lead_outside_the_root(tmp_path):
    root = tmp_path / "out"
    root.mkdir()
    (root / "escape").symlink_to(tmp_path)
    with (
        open_destination(f"file://{root}", settings=TransportSettings()) as destination,
        pytest.raises(ConfigurationError, match="outside"),
    ):
        destination.put_bytes("escape/x.csv", b"x")


def test_local_root_that_is_not_a_directory_is_terminal(tmp_path):
    root = tmp_path / "a-file"
    root.write_text("not a directory")
    with (
        open_destination(f"file://{root}", settings=TransportSettings()) as destination,
        pytest.raises(TerminalDeliveryError, match=str(root)),
    ):
        destination.put_bytes("x.csv", b"x")


# --- S3 -----------------------------------------------------------------------------------------


def s3_head(endpoint: str, bucket: str, key: str) -> dict:
    return s3_client(endpoint).head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")


def crc32_of(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def test_s3_key_is_prefix_slash_name_with_sha256_metadata(aws_environment, bucket, tmp_path):
    source = local_file(tmp_path, 1000)
    with open_destination(f"s3://{bucket}/business-operations/healthmonix") as destination:
        put(destination, source, S3_NAME)
        assert destination.stat(S3_NAME).checksum == source.sha256

    head = s3_head(aws_environment, bucket, f"business-operations/healthmonix/{S3_NAME}")
    assert head["Metadata"]["sha256"] == source.sha256
    assert head["ChecksumCRC32"] == crc32_of(source.data)


def test_s3_without_prefix_uses_the_name_as_key(aws_environment, bucket):
    with open_destination(f"s3://{bucket}") as destination:
        destination.put_bytes(SFTP_NAME, b"x")
        assert [entry.name for entry in destination.list()] == [SFTP_NAME]
    assert s3_head(aws_environment, bucket, SFTP_NAME)["ContentLength"] == 1


def multipart_settings(**overrides) -> TransportSettings:
    return TransportSettings.from_env(
        s3_multipart_threshold=5 * MiB, s3_multipart_chunksize=5 * MiB, **overrides
    )


def test_s3_multipart_upload_is_verified_by_full_object_crc32(aws_environment, bucket, tmp_path):
    source = local_file(tmp_path, 12 * MiB + 12_345)
    with open_destination(f"s3://{bucket}/p", settings=multipart_settings()) as destination:
        stored = put(destination, source, S3_NAME)

    head = s3_head(aws_environment, bucket, f"p/{S3_NAME}")
    assert head["ETag"].endswith('-3"')  # three parts: 5 + 5 + 2 MiB
    assert head["ChecksumType"] == "FULL_OBJECT"
    assert head["ChecksumCRC32"] == crc32_of(source.data)
    assert stored.checksum == source.sha256
    body = s3_client(aws_environment).get_object(Bucket=bucket, Key=f"p/{S3_NAME}")["Body"]
    assert hashlib.sha256(body.read()).hexdigest() == source.sha256


def test_s3_corrupted_part_is_caught_and_uploaded_again(aws_environment, bucket, tmp_path):
    source = local_file(tmp_path, 11 * MiB)
    with s3_fault_proxy(aws_environment) as proxy:
        proxy.corrupt("PUT", query_contains="partNumber=2")
        settings = multipart_settings(s3_endpoint_url=proxy.url)
        with open_destination(f"s3://{bucket}/p", settings=settings) as destination:
            put(destination, source, S3_NAME)

    assert proxy.count("POST", "uploads") == 2  # the second multipart upload succeeded
    body = s3_client(aws_environment).get_object(Bucket=bucket, Key=f"p/{S3_NAME}")["Body"]
    assert body.read() == source.data


@pytest.mark.parametrize("how", ["left unfinished", "Ctrl-C"])
def test_a_started_s3_upload_left_early_is_cancelled_and_stores_nothing(
    aws_environment, bucket, tmp_path, how
):
    """start_put_file's transfer threads send a multipart upload (each part slowed down): a
    `with` left before `result()`, quietly or by Ctrl-C, aborts it; no object appears."""
    source = local_file(tmp_path, 11 * MiB)
    with s3_fault_proxy(aws_environment) as proxy:
        proxy.delay("PUT", 0.5, query_contains="partNumber=")
        settings = multipart_settings(s3_endpoint_url=proxy.url)
        with open_destination(f"s3://{bucket}/p", settings=settings) as destination:
            try:
                with destination.start_put_file(
                    source.path, S3_NAME, size=source.size, sha256=source.sha256
                ):
                    deadline = time.monotonic() + 30
                    while not proxy.count("PUT", "partNumber="):  # the parts are on their way
                        assert time.monotonic() < deadline, "no part was sent"
                        time.sleep(0.01)
                    if how == "Ctrl-C":
                        raise KeyboardInterrupt
            except KeyboardInterrupt:
                pass
            assert list(destination.list()) == []
    assert proxy.count("DELETE", "uploadId=") == 1  # AbortMultipartUpload
    assert proxy.count("POST", "uploadId=") == 0  # never completed
    client = s3_client(aws_environment)
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_s3_object_that_never_verifies_is_terminal(aws_environment, bucket, tmp_path):
    source = local_file(tmp_path, 11 * MiB)
    with s3_fault_proxy(aws_environment) as proxy:
        proxy.corrupt("PUT", query_contains="partNumber=1", times=10)
        settings = multipart_settings(s3_endpoint_url=proxy.url)
        with (
            open_destination(f"s3://{bucket}/p", settings=settings) as destination,
            pytest.raises(TerminalDeliveryError, match="verification failed.*CRC32"),
        ):
            put(destination, source, S3_NAME)


def test_s3_http_500_is_not_retried_inside_botocore(aws_environment, bucket, tmp_path):
    # One attempt per request: the 500 surfaces at once, and loader.retry is the only loop.
    source = local_file(tmp_path, 2000)
    with s3_fault_proxy(aws_environment) as proxy:
        proxy.fail("PUT", status=500, code="InternalError", query_contains=S3_NAME)
        settings = TransportSettings.from_env(s3_endpoint_url=proxy.url)
        with (
            open_destination(f"s3://{bucket}/p", settings=settings) as destination,
            pytest.raises(TransientDeliveryError, match="InternalError"),
        ):
            put(destination, source, S3_NAME)
    assert proxy.count("PUT", S3_NAME) == 1


def test_s3_http_500_surfaces_as_transient_and_retrying_recovers(aws_environment, bucket, tmp_path):
    source = local_file(tmp_path, 2000)
    with s3_fault_proxy(aws_environment) as proxy:
        settings = TransportSettings.from_env(s3_endpoint_url=proxy.url)
        with open_destination(f"s3://{bucket}/p", settings=settings) as destination:
            proxy.fail("PUT", status=503, code="SlowDown", query_contains=S3_NAME)
            with pytest.raises(TransientDeliveryError, match="SlowDown") as raised:
                put(destination, source, S3_NAME)
            assert S3_NAME in str(raised.value) and f"s3://{bucket}/p" in str(raised.value)

            proxy.fail("PUT", status=500, code="InternalError", query_contains=S3_NAME)
            delays: list[float] = []
            retrying(lambda: put(destination, source, S3_NAME), sleep=delays.append)
            assert len(delays) == 1
            assert destination.get_bytes(S3_NAME) == source.data
    assert proxy.count("PUT", S3_NAME) == 3


def test_s3_http_429_is_transient_as_for_athena(aws_environment, bucket, tmp_path):
    # A code the store makes up: the status alone says "slow down" (loader.aws.classify).
    source = local_file(tmp_path, 2000)
    with s3_fault_proxy(aws_environment) as proxy:
        proxy.fail("PUT", status=429, code="TooManyRequests", query_contains=S3_NAME)
        settings = TransportSettings.from_env(s3_endpoint_url=proxy.url)
        with open_destination(f"s3://{bucket}/p", settings=settings) as destination:
            delays: list[float] = []
            retrying(lambda: put(destination, source, S3_NAME), sleep=delays.append)
            assert len(delays) == 1, "retried once, after the policy's wait"
            assert destination.get_bytes(S3_NAME) == source.data
    assert proxy.count("PUT", S3_NAME) == 2


def test_s3_connection_refused_is_transient_and_unreachable(aws_environment, tmp_path):
    closed = f"http://127.0.0.1:{free_port()}"
    settings = TransportSettings.from_env(s3_endpoint_url=closed, connect_timeout=2)
    source = local_file(tmp_path, 100)
    with open_destination("s3://mips-bucket/p", settings=settings) as destination:
        for operation in (
            lambda: put(destination, source, S3_NAME),
            lambda: destination.stat(S3_NAME),
            destination.preflight,
        ):
            delays: list[float] = []
            # retried like any transient error; once spent, a run stops using the store
            with pytest.raises(UnreachableError, match="S3 unreachable"):
                retrying(operation, attempts=2, sleep=delays.append)
            assert len(delays) == 1 and issubclass(UnreachableError, TransientDeliveryError)


def test_s3_preflight_missing_bucket_or_denied_is_a_configuration_error(aws_environment):
    with (
        open_destination("s3://no-such-bucket-here/p") as destination,
        pytest.raises(ConfigurationError, match="bucket no-such-bucket-here does not exist"),
    ):
        destination.preflight()


def test_s3_preflight_access_denied_is_a_configuration_error(aws_environment, bucket):
    with s3_fault_proxy(aws_environment) as proxy:
        proxy.fail("HEAD", status=403, code="AccessDenied", times=5)
        settings = TransportSettings.from_env(s3_endpoint_url=proxy.url)
        with (
            open_destination(f"s3://{bucket}/p", settings=settings) as destination,
            pytest.raises(ConfigurationError, match="denied"),
        ):
            destination.preflight()


def test_s3_stat_is_a_head_with_size_and_sha256(aws_environment, bucket, tmp_path):
    source = local_file(tmp_path, 4321)
    with s3_fault_proxy(aws_environment) as proxy:
        settings = TransportSettings.from_env(s3_endpoint_url=proxy.url)
        with open_destination(f"s3://{bucket}/p", settings=settings) as destination:
            put(destination, source, S3_NAME)
            before = len(proxy.requests)
            stored = destination.stat(S3_NAME)
    assert (stored.size, stored.checksum) == (source.size, source.sha256)
    assert [method for method, _ in proxy.requests[before:]] == ["HEAD"]


@pytest.mark.parametrize("code", ["AccessDenied", "InvalidAccessKeyId"])
def test_s3_access_errors_are_terminal_and_not_retried(aws_environment, bucket, tmp_path, code):
    source = local_file(tmp_path, 100)
    with s3_fault_proxy(aws_environment) as proxy:
        proxy.fail("PUT", status=403, code=code, times=100)
        settings = TransportSettings.from_env(s3_endpoint_url=proxy.url)
        with (
            open_destination(f"s3://{bucket}/p", settings=settings) as destination,
            pytest.raises(TerminalDeliveryError, match=code),
        ):
            retrying(lambda: put(destination, source, S3_NAME), sleep=no_sleep())
    assert proxy.count("PUT") == 1


def test_s3_missing_bucket_is_terminal(aws_environment, tmp_path):
    with (
        open_destination("s3://no-such-bucket-here/p") as destination,
        pytest.raises(TerminalDeliveryError, match="NoSuchBucket"),
    ):
        put(destination, local_file(tmp_path, 10), S3_NAME)


@pytest.mark.parametrize(
    ("sse", "kms_key_id"), [("AES256", None), ("aws:kms", "alias/mips-deliveries")]
)
def test_s3_server_side_encryption_is_requested(aws_environment, bucket, tmp_path, sse, kms_key_id):
    settings = TransportSettings.from_env(s3_sse=sse, s3_kms_key_id=kms_key_id)
    with open_destination(f"s3://{bucket}/p", settings=settings) as destination:
        put(destination, local_file(tmp_path, 100), S3_NAME)
        destination.put_bytes("manifest.json", b"{}")

    for key in (f"p/{S3_NAME}", "p/manifest.json"):
        head = s3_head(aws_environment, bucket, key)
        assert head["ServerSideEncryption"] == sse
        if kms_key_id:
            assert kms_key_id in head["SSEKMSKeyId"]


def test_s3_sse_comes_from_the_environment(aws_environment, bucket, monkeypatch):
    monkeypatch.setenv("MIPS_S3_SSE", "AES256")
    with open_destination(f"s3://{bucket}/p") as destination:
        destination.put_bytes("x.json", b"{}")
    assert s3_head(aws_environment, bucket, "p/x.json")["ServerSideEncryption"] == "AES256"


# --- SFTP (asyncssh) ----------------------------------------------------------------------------


def test_sftp_connection_dropped_mid_upload_is_retried_without_partial_files(sftp, tmp_path):
    source = local_file(tmp_path, 1 * MiB)
    sftp.faults.drop_after_bytes = 200_000
    seen_between_attempts = []

    def inspect_then_skip_waiting(delay: float) -> None:
        seen_between_attempts.append(files_under(sftp.root))

    with open_destination(sftp.url, settings=sftp.settings) as destination:
        retrying(lambda: put(destination, source, SFTP_NAME), sleep=inspect_then_skip_waiting)

    assert sftp.faults.drops == 1
    # Between the attempts only the partial temporary file existed, never the final name.
    [between] = seen_between_attempts
    assert len(between) == 1 and between[0].startswith(f".{SFTP_NAME}.")
    assert between[0].endswith(".part")
    assert (sftp.root / SFTP_NAME).read_bytes() == source.data
    assert files_under(sftp.root) == [SFTP_NAME]


def test_sftp_dropped_connection_is_transient(sftp, tmp_path):
    sftp.faults.drop_after_bytes = 100_000
    with open_destination(sftp.url, settings=sftp.settings) as destination:
        with pytest.raises(TransientDeliveryError, match="SFTP connection failed") as raised:
            put(destination, local_file(tmp_path, MiB), SFTP_NAME)
        assert destination.describe() in str(raised.value) and SFTP_NAME in str(raised.value)
        # The next call reconnects and tidies the abandoned temporary file.
        assert destination.stat(SFTP_NAME) is None
    assert files_under(sftp.root) == []


def test_sftp_unknown_host_key_is_terminal_and_uploads_nothing(sftp, tmp_path, ssh_keys):
    known_hosts = write_known_hosts(
        tmp_path / "other_known_hosts", sftp.host, sftp.port + 1, ssh_keys["host"].public_key
    )
    settings = TransportSettings(
        sftp_known_hosts=known_hosts, sftp_key_file=ssh_keys["client"].private_path
    )
    calls = []

    def upload():
        calls.append(1)
        return destination.put_bytes(SFTP_NAME, b"x")

    with (
        open_destination(sftp.url, settings=settings) as destination,
        pytest.raises(TerminalDeliveryError) as raised,
    ):
        retrying(upload, sleep=no_sleep())
    assert f"host key for {sftp.host}:{sftp.port} not in {known_hosts}" in str(raised.value)
    assert len(calls) == 1
    assert files_under(sftp.root) == []


def test_sftp_changed_host_key_is_terminal_and_uploads_nothing(sftp, tmp_path, ssh_keys):
    known_hosts = write_known_hosts(
        tmp_path / "stale_known_hosts", sftp.host, sftp.port, ssh_keys["other_host"].public_key
    )
    settings = TransportSettings(
        sftp_known_hosts=known_hosts, sftp_key_file=ssh_keys["client"].private_path
    )
    with (
        open_destination(sftp.url, settings=settings) as destination,
        pytest.raises(TerminalDeliveryError, match=r"host key for .* changed"),
    ):
        destination.put_bytes(SFTP_NAME, b"x")
    assert files_under(sftp.root) == []


def test_sftp_missing_known_hosts_file_is_a_configuration_error(sftp, tmp_path):
    settings = TransportSettings(
        sftp_known_hosts=tmp_path / "absent", sftp_key_file=sftp.settings.sftp_key_file
    )
    with (
        open_destination(sftp.url, settings=settings) as destination,
        pytest.raises(ConfigurationError, match="known_hosts file .* does not exist"),
    ):
        destination.stat(SFTP_NAME)


def test_sftp_permission_denied_is_terminal(sftp, tmp_path):
    sftp.faults.deny_writes = True
    calls = []

    def upload():
        calls.append(1)
        return put(destination, local_file(tmp_path, 1000), SFTP_NAME)

    with (
        open_destination(sftp.url, settings=sftp.settings) as destination,
        pytest.raises(TerminalDeliveryError, match="refused"),
    ):
        retrying(upload, sleep=no_sleep())
    assert len(calls) == 1
    assert files_under(sftp.root) == []


def test_sftp_without_posix_rename_falls_back_to_remove_and_rename(sftp, tmp_path):
    sftp.faults.posix_rename = False
    second = local_file(tmp_path, 4000, "second.csv")
    with open_destination(sftp.url, settings=sftp.settings) as destination:
        put(destination, local_file(tmp_path, 3000, "first.csv"), SFTP_NAME)
        put(destination, second, SFTP_NAME)
    assert (sftp.root / SFTP_NAME).read_bytes() == second.data
    assert files_under(sftp.root) == [SFTP_NAME]


def test_sftp_password_authentication_from_a_file(sftp, tmp_path):
    password_file = tmp_path / "password"
    password_file.write_text("correct horse\n")
    settings = TransportSettings(
        sftp_known_hosts=sftp.known_hosts, sftp_password_file=password_file
    )
    with open_destination(sftp.url, settings=settings) as destination:
        destination.put_bytes(SFTP_NAME, b"x")
    assert (sftp.root / SFTP_NAME).read_bytes() == b"x"


def test_sftp_wrong_password_is_terminal_and_never_shown(sftp):
    settings = TransportSettings(sftp_known_hosts=sftp.known_hosts, sftp_password="hunter2-wrong")
    with (
        open_destination(sftp.url, settings=settings) as destination,
        pytest.raises(TerminalDeliveryError, match="authentication failed") as raised,
    ):
        destination.put_bytes(SFTP_NAME, b"x")
    assert "hunter2" not in str(raised.value)
    assert "hunter2" not in destination.describe() + repr(destination) + repr(settings)


def test_sftp_encrypted_key_needs_its_passphrase(sftp, tmp_path):
    key = make_ssh_key(tmp_path / "encrypted_key", passphrase="open sesame")
    settings = TransportSettings(sftp_known_hosts=sftp.known_hosts, sftp_key_file=key.private_path)
    with (
        open_destination(sftp.url, settings=settings) as destination,
        pytest.raises(ConfigurationError, match="MIPS_SFTP_KEY_PASSPHRASE"),
    ):
        destination.stat(SFTP_NAME)
    wrong = replace(settings, sftp_key_passphrase="open barley")
    with (
        open_destination(sftp.url, settings=wrong) as destination,
        pytest.raises(ConfigurationError, match="cannot load key .*: wrong passphrase") as raised,
    ):
        destination.stat(SFTP_NAME)
    assert "barley" not in str(raised.value)
    # With the right passphrase the key loads; the server just does not know it.
    right = replace(settings, sftp_key_passphrase="open sesame")
    with (
        open_destination(sftp.url, settings=right) as destination,
        pytest.raises(TerminalDeliveryError, match="authentication failed"),
    ):
        destination.stat(SFTP_NAME)


def test_sftp_without_credentials_is_a_configuration_error(sftp):
    settings = TransportSettings(sftp_known_hosts=sftp.known_hosts)
    with (
        open_destination(sftp.url, settings=settings) as destination,
        pytest.raises(ConfigurationError, match="no SFTP credentials"),
    ):
        destination.stat(SFTP_NAME)


def test_sftp_credentials_come_from_the_environment(sftp, monkeypatch):
    monkeypatch.setenv("MIPS_SFTP_KNOWN_HOSTS", str(sftp.known_hosts))
    monkeypatch.setenv("MIPS_SFTP_KEY_FILE", str(sftp.settings.sftp_key_file))
    with open_destination(sftp.url) as destination:
        destination.put_bytes(SFTP_NAME, b"from env")
    assert (sftp.root / SFTP_NAME).read_bytes() == b"from env"


# --- SFTP against a real OpenSSH server ----------------------------------------------------------


@pytest.fixture
def openssh(tmp_path):
    try:
        with openssh_sftp_server(tmp_path / "registry") as server:
            yield server
    except SshdUnavailable as reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"OpenSSH interop test cannot run in CI: {reason}")
        pytest.skip(f"OpenSSH interop test skipped: {reason}")


def test_openssh_interop_upload_list_stat(openssh, tmp_path):
    root = tmp_path / "registry"
    known_hosts = write_known_hosts(
        tmp_path / "known_hosts", openssh.host, openssh.port, openssh.host_public_key
    )
    settings = TransportSettings(
        sftp_known_hosts=known_hosts, sftp_key_file=openssh.client_key_path, connect_timeout=5
    )
    source = local_file(tmp_path, 3 * MiB + 7)
    url = f"sftp://{openssh.user}@{openssh.host}:{openssh.port}{root}"

    with open_destination(url, settings=settings) as destination:
        stored = put(destination, source, SFTP_NAME)
        put(destination, source, SFTP_NAME)  # overwrite via posix-rename
        assert stored.size == source.size
        assert destination.stat(SFTP_NAME).size == source.size
        assert [entry.name for entry in destination.list()] == [SFTP_NAME]
        assert destination.get_bytes("absent.csv") is None

    assert (root / SFTP_NAME).read_bytes() == source.data
    assert files_under(root) == [SFTP_NAME]
