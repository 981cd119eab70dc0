"""S3Task: upload a file in parts, list, copy, download and verify, then clean up.

The example runs moto's S3 server on 127.0.0.1 (pip install 'moto[server]'). Against S3,
MinIO or another S3-compatible store, drop the server and give endpoint_url= (or
AWS_ENDPOINT_URL_S3) and the usual AWS_* credentials.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import anyio
from aiobotocore.session import get_session
from moto.server import ThreadedMotoServer

from dremioframe_async import Pipeline
from dremioframe_async.tasks import S3Task

MiB = 1 << 20


async def main() -> None:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "example")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "example")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        async with get_session().create_client("s3", endpoint_url=endpoint) as s3:
            await s3.create_bucket(Bucket="exports")
        with tempfile.TemporaryDirectory() as tmp:
            src, back = Path(tmp, "export.bin"), Path(tmp, "back.bin")
            src.write_bytes(os.urandom(11 * MiB))
            opts = {"endpoint_url": endpoint, "part_size": 5 * MiB, "multipart_threshold": 5 * MiB}
            up = S3Task("upload", "upload", "exports", "2026/export.bin", src, **opts)
            ls = S3Task("list", "list", "exports", prefix="2026/", endpoint_url=endpoint)
            cp = S3Task("copy", "copy", "exports", "2026/export.bin", dest_key="latest.bin", **opts)
            down = S3Task("download", "download", "exports", "latest.bin", back, **opts)
            rm = S3Task("delete", "delete", "exports", "2026/export.bin", endpoint_url=endpoint)
            up >> ls >> cp >> down >> rm
            result = await Pipeline("s3").add_task(up).run()
            result.raise_for_status()
            same = (
                hashlib.sha256(src.read_bytes()).digest()
                == hashlib.sha256(back.read_bytes()).digest()
            )
        print("uploaded in parts, ETag", result["upload"])
        print("listed:", [(o.key, o.size) for o in result["list"]])
        print("downloaded copy identical:", same)
    finally:
        server.stop()


if __name__ == "__main__":
    anyio.run(main)
