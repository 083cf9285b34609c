"""Servers on 127.0.0.1 standing in for S3 and the registry's SFTP server, for the test suite
and the benchmark alike (neither depends on the other's tree); not part of the installed loader.

- `loopback.s3`: an in-process moto server (`moto_s3_server`), a client and a bucket on it, and
  the environment that points boto3's default chain and the loader at it with fake credentials.
- `loopback.ssh`: SSH keys and known_hosts files, a free port, and the system's sshd serving
  SFTP (`openssh_sftp_server`; `SshdUnavailable` says why it cannot run here).

The servers the tests make misbehave (a fault proxy in front of moto, an asyncssh SFTP server
with faults) build on these, in tests/support/transport_servers.py.
"""
