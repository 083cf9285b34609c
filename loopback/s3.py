"""moto's S3 (and Athena) on 127.0.0.1, with fake credentials that never reach AWS."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from moto.server import ThreadedMotoServer
from werkzeug.serving import make_server

from loopback.ssh import LOCALHOST

FAKE_AWS_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
# Unset so a developer's real profile or session can never be picked up by a test.
AWS_VARIABLES_TO_CLEAR = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")


def fake_aws_environment(endpoint_url: str, config_dir: Path) -> dict[str, str]:
    """Variables that point boto3's default chain and MIPS_S3_ENDPOINT_URL at a test server."""
    return {
        **FAKE_AWS_CREDENTIALS,
        "AWS_CONFIG_FILE": str(config_dir / "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(config_dir / "aws-credentials"),
        "MIPS_S3_ENDPOINT_URL": endpoint_url,
    }


# How often a serving loop looks whether it was told to stop: the servers' own default (half a
# second) is what every start and stop of a server would otherwise cost the tests.
POLL_INTERVAL = 0.02


class _MotoServer(ThreadedMotoServer):
    """moto's threaded server, its loop polling for shutdown every POLL_INTERVAL."""

    def _server_entry(self) -> None:
        app = DomainDispatcherApplication(create_backend_app)
        self._server = make_server(
            self._ip_address, self._port, app, True, request_handler=MotoRequestHandler
        )
        self._server_ready_event.set()
        self._server.serve_forever(poll_interval=POLL_INTERVAL)


@contextmanager
def moto_s3_server() -> Iterator[str]:
    """An in-process moto server; yields its endpoint URL."""
    server = _MotoServer(ip_address=LOCALHOST, port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    # moto keeps its state per process, not per server: start every server empty.
    moto_api(endpoint, "/moto-api/reset")
    try:
        yield endpoint
    finally:
        server.stop()


def moto_api(endpoint: str, path: str, payload: dict | None = None) -> None:
    """POST to moto's own control API (reset, canned Athena results, state transitions)."""
    request = urllib.request.Request(  # noqa: S310 - our own loopback server
        endpoint + path,
        data=json.dumps(payload or {}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        response.read()


def s3_client(endpoint_url: str):
    """A client with explicit fake credentials, independent of the environment."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=FAKE_AWS_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_AWS_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=FAKE_AWS_CREDENTIALS["AWS_DEFAULT_REGION"],
    )


def create_bucket(endpoint_url: str, bucket: str) -> str:
    s3_client(endpoint_url).create_bucket(Bucket=bucket)
    return bucket
