"""SSH keys, known_hosts files, a free port, and the system's sshd serving SFTP on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

LOCALHOST = "127.0.0.1"
SSHD = Path("/usr/sbin/sshd")


class SshKey(NamedTuple):
    private_path: Path
    public_key: str  # "ssh-ed25519 AAAA..."


def make_ssh_key(path: Path, *, passphrase: str | None = None) -> SshKey:
    """A new ed25519 key in OpenSSH format at `path` (mode 0600), public half at `path`.pub."""
    key = Ed25519PrivateKey.generate()
    encryption = BestAvailableEncryption(passphrase.encode()) if passphrase else NoEncryption()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, encryption))
    path.chmod(0o600)
    public_key = key.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
    path.with_name(path.name + ".pub").write_text(public_key + "\n")
    return SshKey(path, public_key)


def write_known_hosts(path: Path, host: str, port: int, public_key: str) -> Path:
    """A known_hosts file holding one `[host]:port keytype base64` line."""
    key_type, key_base64 = public_key.split()[:2]
    path.write_text(f"[{host}]:{port} {key_type} {key_base64}\n")
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOCALHOST, 0))
        return probe.getsockname()[1]


class SshdUnavailable(RuntimeError):
    """The system sshd cannot be used here; the message says why."""


class OpenSshServer(NamedTuple):
    host: str
    port: int
    host_public_key: str
    user: str
    client_key_path: Path
    log_path: Path  # sshd's log (LogLevel INFO), while the server runs


SSHD_CONFIG = """\
ListenAddress {host}
Port {port}
HostKey {host_key}
PidFile {pid_file}
AuthorizedKeysFile {authorized_keys}
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
Subsystem sftp internal-sftp
"""


@contextmanager
def openssh_sftp_server(root: Path) -> Iterator[OpenSshServer]:
    """The system sshd on a free port with its own host key; log in as root with the yielded key.

    Files land under `root` (an absolute path on this machine; there is no chroot).
    """
    if not SSHD.exists():
        raise SshdUnavailable(f"{SSHD} is not installed (apt-get install openssh-server)")
    if os.geteuid() != 0:
        raise SshdUnavailable("sshd needs to run as root to log users in")
    root.mkdir(parents=True, exist_ok=True)
    # sshd refuses to start without its privilege-separation directory.
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mips-sshd-") as workdir:
        work = Path(workdir)
        host_key = make_ssh_key(work / "ssh_host_ed25519_key")
        client_key = make_ssh_key(work / "client_key")
        authorized_keys = work / "authorized_keys"
        authorized_keys.write_text(client_key.public_key + "\n")
        port = free_port()
        config = work / "sshd_config"
        config.write_text(
            SSHD_CONFIG.format(
                host=LOCALHOST,
                port=port,
                host_key=host_key.private_path,
                pid_file=work / "sshd.pid",
                authorized_keys=authorized_keys,
            )
        )
        log_path = work / "sshd.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [str(SSHD), "-D", "-e", "-f", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own session: a signal sshd sends to its process group never reaches pytest.
                start_new_session=True,
            )
        try:
            _wait_for_listener(port, process, log_path)
            yield OpenSshServer(
                LOCALHOST, port, host_key.public_key, "root", client_key.private_path, log_path
            )
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def _wait_for_listener(port: int, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sshd exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            with socket.create_connection((LOCALHOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"sshd did not listen on port {port}:\n{log_path.read_text()}")
