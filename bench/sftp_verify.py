"""SFTP upload throughput: paramiko's putfo (the old upload) against the new checked upload
plus read-back verification, on OpenSSH sshd (internal-sftp) on 127.0.0.1.

    .venv/bin/python -m bench.sftp_verify [--size-mib 256] [--repeat 3]

Each run uploads the same random file; the table gives the median of `--repeat` runs:

- `putfo`: paramiko's pipelined `putfo(confirm=False)` to a file (what the loader used to do,
  without the later stat and rename);
- `write`: the new pipelined writes with every reply checked (SFTPDestination's writer);
- `read-back`: streaming the stored file back and hashing it (the verification);
- `put_file`: the whole `SFTPDestination.put_file` (write, read back, compare, rename).

Needs root and /usr/sbin/sshd (loopback.ssh.openssh_sftp_server, as the tests use it).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
from loader.destinations import TransportSettings, open_destination  # noqa: E402
from loopback.ssh import openssh_sftp_server, write_known_hosts  # noqa: E402

MiB = 1024 * 1024


def make_file(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        remaining = size
        while remaining:
            chunk = os.urandom(min(MiB, remaining))
            digest.update(chunk)
            out.write(chunk)
            remaining -= len(chunk)
    return digest.hexdigest()


def timed(operation) -> float:
    started = time.perf_counter()
    operation()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    size = args.size_mib * MiB
    with tempfile.TemporaryDirectory(prefix="sftp-bench-") as work:
        work_dir = Path(work)
        source = work_dir / "source.csv"
        sha256 = make_file(source, size)
        root = work_dir / "registry"
        with openssh_sftp_server(root) as sshd:
            known_hosts = write_known_hosts(
                work_dir / "known_hosts", sshd.host, sshd.port, sshd.host_public_key
            )
            settings = TransportSettings(
                sftp_known_hosts=known_hosts, sftp_key_file=sshd.client_key_path
            )
            url = f"sftp://{sshd.user}@{sshd.host}:{sshd.port}{root}"
            timings: dict[str, list[float]] = {
                "putfo": [],
                "write": [],
                "read-back": [],
                "put_file": [],
            }
            with open_destination(url, settings=settings) as destination:
                sftp = destination._connection()
                putfo_target, write_target = f"{root}/putfo.csv", f"{root}/write.csv"
                for _ in range(args.repeat):
                    target = putfo_target
                    with open(source, "rb") as handle:
                        timings["putfo"].append(
                            timed(lambda h=handle: sftp.putfo(h, putfo_target, size, confirm=False))
                        )
                    sftp.remove(target)

                    target = write_target
                    with open(source, "rb") as handle:
                        timings["write"].append(
                            timed(lambda h=handle: sftp.write_new_file(write_target, 0o600, h.read))
                        )
                    digest = None

                    def read_back(path=target):
                        nonlocal digest
                        digest = sftp.digest_file(path)

                    timings["read-back"].append(timed(read_back))
                    assert digest is not None and digest.sha256 == sha256, digest
                    sftp.remove(target)

                    timings["put_file"].append(
                        timed(
                            lambda: destination.put_file(
                                source, "data.csv", size=size, sha256=sha256
                            )
                        )
                    )
    print(f"SFTP to OpenSSH on 127.0.0.1, {args.size_mib} MiB file, median of {args.repeat}")
    print("| step | seconds | MB/s |\n|---|---|---|")
    for step, values in timings.items():
        seconds = statistics.median(values)
        print(f"| {step} | {seconds:.2f} | {size / seconds / 1e6:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
