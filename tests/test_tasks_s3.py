"""S3Task against moto's S3 server on loopback: every operation, multipart, integrity."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
import pytest_asyncio
from aiohttp import ClientSession, web

from dremioframe_async import Pipeline, TaskState
from dremioframe_async.tasks import (
    Credential,
    S3Error,
    S3IntegrityError,
    S3Object,
    S3Task,
)

if os.environ.get("CI") == "true":  # CI installs the test extra: a missing server is a failure
    from moto.server import ThreadedMotoServer
else:
    ThreadedMotoServer = pytest.importorskip(
        "moto.server", reason="needs moto[server]: pip install -e '.[test]'"
    ).ThreadedMotoServer

MiB = 1 << 20
BUCKET = "lake-bucket"


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)


@pytest_asyncio.fixture
async def s3(moto_url: str) -> AsyncIterator[Any]:
    from aiobotocore.session import get_session

    async with get_session().create_client("s3", endpoint_url=moto_url) as client:
        buckets = (await client.list_buckets())["Buckets"]
        if not any(b["Name"] == BUCKET for b in buckets):
            await client.create_bucket(Bucket=BUCKET)
        yield client


Intercept = Callable[[web.Request], Awaitable[web.Response | None]]
Rewrite = Callable[[web.Request, bytes], bytes]


@asynccontextmanager
async def proxy_to(
    upstream_url: str, intercept: Intercept | None = None, rewrite: Rewrite | None = None
) -> AsyncIterator[str]:
    """A real HTTP proxy in front of moto that can answer a request itself or change a body."""

    async def forward(request: web.Request) -> web.Response:
        if intercept is not None and (answer := await intercept(request)) is not None:
            return answer
        dropped = ("host", "expect", "content-length", "transfer-encoding")
        async with (
            ClientSession() as session,
            session.request(
                request.method,
                upstream_url + request.path_qs,
                headers={k: v for k, v in request.headers.items() if k.lower() not in dropped},
                # BytesIO: aiohttp warns (an error here) about large raw bytes bodies
                data=io.BytesIO(await request.read()),
            ) as upstream,
        ):
            body = await upstream.read()
            if rewrite is not None:
                body = rewrite(request, body)
            headers = {
                k: v
                for k, v in upstream.headers.items()
                # moto's server closes every connection; the proxy keeps its clients' alive
                if k.lower()
                not in ("content-length", "transfer-encoding", "content-encoding", "connection")
            }
            return web.Response(status=upstream.status, body=body, headers=headers)

    app = web.Application(client_max_size=64 * MiB)
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    finally:
        await runner.cleanup()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def data_file(path: Path, size: int) -> Path:
    path.write_bytes(os.urandom(size))
    return path


async def run_one(t: S3Task, **run: Any) -> Any:
    return await Pipeline("p").add_task(t).run(**run)


@pytest.mark.asyncio
async def test_upload_download_list_copy_delete(moto_url: str, s3: Any, tmp_path: Path) -> None:
    src = data_file(tmp_path / "small.bin", 100_000)
    up = S3Task("up", "upload", BUCKET, "in/small.bin", src, endpoint_url=moto_url)
    (await run_one(up)).raise_for_status()

    back = tmp_path / "back.bin"
    down = S3Task("down", "download", BUCKET, "in/small.bin", back, endpoint_url=moto_url)
    assert (await run_one(down))["down"] == str(back)
    assert sha256(back) == sha256(src)
    assert not Path(f"{back}.partial").exists()

    copy = S3Task(
        "cp", "copy", BUCKET, "in/small.bin", dest_key="out/copy.bin", endpoint_url=moto_url
    )
    (await run_one(copy)).raise_for_status()

    listing = (await run_one(S3Task("ls", "list", BUCKET, prefix="", endpoint_url=moto_url)))["ls"]
    assert all(isinstance(o, S3Object) for o in listing)
    keys = {o.key: o.size for o in listing}
    assert keys["in/small.bin"] == keys["out/copy.bin"] == 100_000

    rm = S3Task("rm", "delete", BUCKET, "in/small.bin", endpoint_url=moto_url)
    (await run_one(rm)).raise_for_status()
    listing = (await run_one(S3Task("ls", "list", BUCKET, "in/", endpoint_url=moto_url)))["ls"]
    assert listing == []


@pytest.mark.asyncio
async def test_multipart_upload_over_the_part_size(moto_url: str, s3: Any, tmp_path: Path) -> None:
    src = data_file(tmp_path / "big.bin", 12 * MiB + 123)
    up = S3Task(
        "up", "upload", BUCKET, "big.bin", src,
        endpoint_url=moto_url, part_size=5 * MiB, multipart_threshold=5 * MiB,
    )  # fmt: skip
    etag = (await run_one(up))["up"]
    assert etag.endswith("-3")  # three parts: 5 + 5 + 2 MiB, and our ETag check agreed
    head = await s3.head_object(Bucket=BUCKET, Key="big.bin")
    assert head["ContentLength"] == 12 * MiB + 123
    back = tmp_path / "big.back"
    await run_one(S3Task("down", "download", BUCKET, "big.bin", back, endpoint_url=moto_url))
    assert sha256(back) == sha256(src)
    uploads = await s3.list_multipart_uploads(Bucket=BUCKET)
    assert uploads.get("Uploads", []) == []
    # and a server-side copy in parts
    copy = S3Task(
        "cp", "copy", BUCKET, "big.bin", dest_key="big.copy",
        endpoint_url=moto_url, part_size=5 * MiB, multipart_threshold=5 * MiB,
    )  # fmt: skip
    assert (await run_one(copy))["cp"].endswith("-3")
    head = await s3.head_object(Bucket=BUCKET, Key="big.copy")
    assert head["ContentLength"] == 12 * MiB + 123


def flip_one_byte(request: web.Request, body: bytes) -> bytes:
    if request.method != "GET" or "list-type" in request.query or not body:
        return body
    changed = bytearray(body)
    changed[len(changed) // 2] ^= 0xFF
    return bytes(changed)


@pytest_asyncio.fixture
async def corrupting_proxy(moto_url: str) -> AsyncIterator[str]:
    """Flips one byte of every object body it serves."""
    async with proxy_to(moto_url, rewrite=flip_one_byte) as url:
        yield url


@pytest.mark.asyncio
@pytest.mark.parametrize("stored_checksum", [True, False], ids=["crc32-stored", "md5-etag-only"])
async def test_a_corrupted_download_is_detected_and_leaves_nothing(
    moto_url: str, corrupting_proxy: str, s3: Any, tmp_path: Path, stored_checksum: bool
) -> None:
    src = data_file(tmp_path / "x.bin", 300_000)
    if stored_checksum:  # our upload: botocore stores a CRC32 that it checks on download
        await run_one(S3Task("up", "upload", BUCKET, "x.bin", src, endpoint_url=moto_url))
    else:  # written by a tool that stores no checksum: only the MD5 ETag can tell
        from aiobotocore.config import AioConfig
        from aiobotocore.session import get_session

        plain = AioConfig(request_checksum_calculation="when_required")
        async with get_session().create_client("s3", endpoint_url=moto_url, config=plain) as c:
            await c.put_object(Bucket=BUCKET, Key="x.bin", Body=src.read_bytes())
    back = tmp_path / "x.back"
    down = S3Task("down", "download", BUCKET, "x.bin", back, endpoint_url=corrupting_proxy)
    result = await run_one(down)
    assert result.states["down"] is TaskState.FAILED
    assert isinstance(result.tasks["down"].error, S3IntegrityError)
    assert not back.exists()
    assert not Path(f"{back}.partial").exists()


@pytest.mark.asyncio
async def test_a_cancelled_multipart_upload_is_aborted(
    moto_url: str, s3: Any, tmp_path: Path
) -> None:
    """A proxy holds part 2 until the run is cancelled; no unfinished upload may remain."""
    holding = anyio.Event()

    async def hold_part_two(request: web.Request) -> web.Response | None:
        if request.query.get("partNumber") == "2":
            holding.set()
            await anyio.sleep_forever()  # the client gives up on this part when cancelled
        return None

    src = data_file(tmp_path / "big.bin", 11 * MiB)
    async with proxy_to(moto_url, intercept=hold_part_two) as proxy:
        t = S3Task(
            "up", "upload", BUCKET, "cancelled.bin", src, endpoint_url=proxy,
            part_size=5 * MiB, multipart_threshold=5 * MiB, max_concurrency=1,
        )  # fmt: skip
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(run_one, t)
                await holding.wait()
                tg.cancel_scope.cancel()
    uploads = await s3.list_multipart_uploads(Bucket=BUCKET)
    assert [u["Key"] for u in uploads.get("Uploads", [])] == []


@pytest.mark.asyncio
async def test_a_failed_part_fails_the_upload_as_itself_and_aborts(
    moto_url: str, s3: Any, tmp_path: Path
) -> None:
    """A proxy that refuses part 2 with 403: the S3Error surfaces alone, the upload is aborted."""
    seen: list[str] = []

    async def refuse_part_two(request: web.Request) -> web.Response | None:
        seen.append(request.method)
        if request.query.get("partNumber") == "2":
            return web.Response(status=403, text="<Error><Code>AccessDenied</Code></Error>")
        return None

    src = data_file(tmp_path / "big.bin", 11 * MiB)
    async with proxy_to(moto_url, intercept=refuse_part_two) as proxy:
        t = S3Task(
            "up", "upload", BUCKET, "refused.bin", src, endpoint_url=proxy,
            part_size=5 * MiB, multipart_threshold=5 * MiB, retries=2,
        )  # fmt: skip
        result = await run_one(t)
    error = result.tasks["up"].error
    assert type(error) is S3Error
    assert error.code == "AccessDenied"
    assert result.tasks["up"].attempts == 1
    assert "DELETE" in seen
    uploads = await s3.list_multipart_uploads(Bucket=BUCKET)
    assert [u["Key"] for u in uploads.get("Uploads", [])] == []


@pytest.mark.asyncio
async def test_missing_key_is_not_retried(moto_url: str, s3: Any, tmp_path: Path) -> None:
    t = S3Task("down", "download", BUCKET, "nope", tmp_path / "n", endpoint_url=moto_url, retries=2)
    result = await run_one(t)
    error = result.tasks["down"].error
    assert isinstance(error, S3Error)
    assert error.code == "NoSuchKey"
    assert result.tasks["down"].attempts == 1


@pytest.mark.asyncio
async def test_credentials_and_endpoint_from_the_run_context(
    moto_url: str, s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    src = data_file(tmp_path / "c.bin", 10)
    t = S3Task("up", "upload", BUCKET, "c.bin", src)
    context = {
        "s3_endpoint_url": moto_url,
        "aws_access_key_id": "ctx-key",
        "aws_secret_access_key": "ctx-secret-9f8e",
    }
    (await run_one(t, context=context)).raise_for_status()
    assert "ctx-secret" not in repr(t)
    t = S3Task("up", "upload", BUCKET, "c.bin", src, secret_access_key=Credential("lit-secret"))
    assert "lit-secret" not in repr(t) + repr(t.secret_access_key)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="operation"):
        S3Task("x", "move", BUCKET, "k")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="local_path"):
        S3Task("x", "upload", BUCKET, "k")
    with pytest.raises(ValueError, match="dest_key"):
        S3Task("x", "copy", BUCKET, "k")
    with pytest.raises(ValueError, match="5 MiB"):
        S3Task("x", "upload", BUCKET, "k", "f", part_size=MiB)


@pytest.mark.asyncio
async def test_a_failed_abort_keeps_the_original_error_and_is_logged(
    moto_url: str,
    s3: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Part 3 of the first upload answers 500 and every abort 403: the 500 is what the
    attempt failed on (so it is retried, and the second attempt succeeds); the failed
    abort is logged."""
    uploads: list[str] = []

    async def fail_part_three_then_refuse_aborts(request: web.Request) -> web.Response | None:
        upload = request.query.get("uploadId")
        if upload and upload not in uploads:
            uploads.append(upload)
        if request.method == "DELETE" and upload:
            return web.Response(status=403, text="<Error><Code>AccessDenied</Code></Error>")
        if request.query.get("partNumber") == "3" and upload == uploads[0]:
            return web.Response(status=500, text="<Error><Code>InternalError</Code></Error>")
        return None

    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # botocore's own retries would only slow this
    src = data_file(tmp_path / "big.bin", 11 * MiB)
    async with proxy_to(moto_url, intercept=fail_part_three_then_refuse_aborts) as proxy:
        t = S3Task(
            "up", "upload", BUCKET, "abort-refused.bin", src, endpoint_url=proxy,
            part_size=5 * MiB, multipart_threshold=5 * MiB, max_concurrency=1, retries=1,
        )  # fmt: skip
        result = await run_one(t)
    result.raise_for_status()
    assert result.tasks["up"].attempts == 2
    logged = [r.getMessage() for r in caplog.records if r.name == "dremioframe_async.tasks.s3"]
    assert len(logged) == 1
    assert uploads[0] in logged[0]
    assert "AccessDenied" in logged[0]
    await s3.abort_multipart_upload(Bucket=BUCKET, Key="abort-refused.bin", UploadId=uploads[0])


@pytest.mark.asyncio
async def test_concurrent_downloads_to_one_path_do_not_collide(
    moto_url: str, s3: Any, tmp_path: Path
) -> None:
    body = os.urandom(3 * MiB)
    await s3.put_object(Bucket=BUCKET, Key="shared.bin", Body=body)
    target = tmp_path / "out.bin"
    p = Pipeline("downloads")
    for i in range(4):
        p.add_task(S3Task(f"d{i}", "download", BUCKET, "shared.bin", target, endpoint_url=moto_url))
    (await p.run()).raise_for_status()
    assert target.read_bytes() == body
    assert sorted(f.name for f in tmp_path.iterdir()) == ["out.bin"]  # no temporary left


@pytest.mark.asyncio
async def test_a_configuration_error_is_not_retried(moto_url: str, tmp_path: Path) -> None:
    # An access key without its secret: botocore's PartialCredentialsError.
    t = S3Task("list", "list", BUCKET, endpoint_url=moto_url, access_key_id="AKIAONLY", retries=2)
    result = await run_one(t)
    error = result.tasks["list"].error
    assert type(error) is S3Error, repr(error)
    assert "PartialCredentialsError" in str(error)
    assert result.tasks["list"].attempts == 1


@pytest.mark.asyncio
async def test_a_fan_out_of_100_s3_tasks_shares_one_client(
    moto_url: str, s3: Any, tmp_path: Path
) -> None:
    """Counted at a proxy: one client per run keeps its connections alive."""
    peers: set[Any] = set()

    async def count(request: web.Request) -> None:
        assert request.transport is not None
        peers.add(request.transport.get_extra_info("peername"))

    await s3.put_object(Bucket=BUCKET, Key="fan/one.txt", Body=b"x")
    async with proxy_to(moto_url, intercept=count) as proxy:  # type: ignore[arg-type]
        p = Pipeline("fan", max_concurrency=4)
        for i in range(100):
            p.add_task(S3Task(f"l{i}", "list", BUCKET, prefix="fan/", endpoint_url=proxy))
        result = await p.run()
    result.raise_for_status()
    assert all(len(result[f"l{i}"]) == 1 for i in range(100))
    assert len(peers) <= 4, len(peers)
