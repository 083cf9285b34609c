"""The floor: the least work that moves the same slices to the same places.

One `psql` session `\\copy`s every (year, state) slice of the export model to a file, then plain
boto3 `upload_file` puts each file in S3 and paramiko `putfo` each SFTP-enabled one on the
server. No verification, no manifests, no run log: what any loader has to pay at the minimum.

Run as `python -m bench.floor --config FILE`; prints a JSON report (phase seconds, per-slice
bytes and SHA-256) on stdout.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def copy_command(
    relation: str,
    columns: list[str],
    year: int,
    state: str,
    path: Path,
    header: list[str] | None = None,
) -> str:
    """One `\\copy` line (psql takes the whole meta-command from one line).

    The model's columns are named for engines (snake case); the file's header names come from
    the deliveries model, so each column is aliased to its header name and psql writes them.
    """
    names = header or columns
    column_list = ", ".join(
        f"{_quoted(column)} as {_quoted(name)}" for column, name in zip(columns, names, strict=True)
    )
    state_literal = "'" + state.replace("'", "''") + "'"
    target = "'" + str(path).replace("'", "''") + "'"
    return (
        f"\\copy (select {column_list} from {relation} where performance_year = {int(year)}"
        f" and state_code = {state_literal} order by file_row_number)"
        f" to {target} with (format csv, header)"
    )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def copy_slices(config: dict, work: Path) -> list[Path]:
    paths = [work / f"{s['performance_year']}-{s['state_code']}.csv" for s in config["slices"]]
    script = work / "copy.psql"
    script.write_text(
        "\n".join(
            copy_command(
                config["relation"],
                config["columns"],
                s["performance_year"],
                s["state_code"],
                path,
                s.get("header"),
            )
            for s, path in zip(config["slices"], paths, strict=True)
        )
        + "\n"
    )
    subprocess.run(
        [config["psql"], "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", config["conninfo"]]
        + ["-f", str(script)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return paths


def upload_s3(config: dict, paths: list[Path]) -> None:
    if not config.get("s3_bucket"):
        root = Path(config["s3_dir"])
        for s, path in zip(config["slices"], paths, strict=True):
            target = root / s["s3_key"]
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
        return
    import boto3

    client = boto3.client("s3", endpoint_url=os.environ.get("MIPS_S3_ENDPOINT_URL") or None)
    prefix = config.get("s3_prefix") or ""
    for s, path in zip(config["slices"], paths, strict=True):
        key = f"{prefix}/{s['s3_key']}" if prefix else s["s3_key"]
        client.upload_file(str(path), config["s3_bucket"], key)


def upload_sftp(config: dict, paths: list[Path]) -> None:
    enabled = [
        (s, path) for s, path in zip(config["slices"], paths, strict=True) if s["sftp_file_name"]
    ]
    if not enabled:
        return
    settings = config.get("sftp")
    if settings is None:
        root = Path(config["sftp_dir"])
        for s, path in enabled:
            shutil.copyfile(path, root / s["sftp_file_name"])
        return
    import paramiko

    client = paramiko.SSHClient()
    client.load_host_keys(settings["known_hosts"])
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        settings["host"],
        port=settings["port"],
        username=settings["user"],
        key_filename=settings["key_file"],
        allow_agent=False,
        look_for_keys=False,
    )
    try:
        sftp = client.open_sftp()
        for s, path in enabled:
            with open(path, "rb") as handle:
                sftp.putfo(handle, f"{settings['dir']}/{s['sftp_file_name']}")
        sftp.close()
    finally:
        client.close()


def run(config: dict) -> dict:
    """`config`: psql, conninfo, relation, columns, slices [{performance_year, state_code,
    s3_key, sftp_file_name, header}], s3_bucket + s3_prefix or s3_dir, sftp {...} or sftp_dir,
    work_dir.
    """
    phases: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="floor-", dir=config.get("work_dir")) as directory:
        work = Path(directory)
        started = time.monotonic()
        paths = copy_slices(config, work)
        phases["copy"] = time.monotonic() - started
        started = time.monotonic()
        upload_s3(config, paths)
        phases["s3"] = time.monotonic() - started
        started = time.monotonic()
        upload_sftp(config, paths)
        phases["sftp"] = time.monotonic() - started
        deliveries = [
            {
                "performance_year": s["performance_year"],
                "state_code": s["state_code"],
                "bytes": path.stat().st_size,
                "sha256": sha256_of(path),
            }
            for s, path in zip(config["slices"], paths, strict=True)
        ]
    return {"seconds": sum(phases.values()), "phases": phases, "deliveries": deliveries}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="JSON written by the harness")
    args = parser.parse_args()
    print(json.dumps(run(json.loads(args.config.read_text()))))


if __name__ == "__main__":
    main()
