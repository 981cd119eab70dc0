"""S3 as a task, on aiobotocore: upload, download, list, delete, copy; large files in parts.

Files are never held whole in memory: uploads above ``multipart_threshold`` go
in ``part_size`` parts (at most ``max_concurrency`` in flight), downloads are
streamed to ``<path>.<unique>.partial`` and renamed into place only once complete.
Every part and every single-request upload carries its MD5 (the server rejects
a corrupted body) and the returned ETags are checked against it; a download is
checked against the object's length, and against its MD5 where the ETag is one.
A multipart upload that fails or is cancelled is aborted (shielded, bounded).

Endpoint and credentials: the arguments, else ``run(context={...})``
(``s3_endpoint_url``, ``aws_access_key_id``, ``aws_secret_access_key``,
``aws_session_token``, ``aws_region``), else botocore's own chain (``AWS_*``
environment variables, profiles, instance roles; ``AWS_ENDPOINT_URL_S3``).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import functools
import hashlib
import logging
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import anyio

from ..orchestration import RunContext, Task
from ._clients import client_resource_options, run_client
from ._common import (
    Credential,
    CredentialValue,
    TaskLibraryError,
    redact,
    require_asyncio,
    resolve,
    setting,
    with_default_retry,
)

__all__ = ["S3Error", "S3IntegrityError", "S3Object", "S3Task", "S3TransientError"]

logger = logging.getLogger("dremioframe_async.tasks.s3")

S3_RESOURCE = "s3"
"""The run resource (a :class:`~dremioframe_async.tasks.ClientPool`) S3 tasks use by default."""

Operation = Literal["upload", "download", "list", "delete", "copy"]
_OPERATIONS = ("upload", "download", "list", "delete", "copy")
MiB = 1 << 20
_MIN_PART = 5 * MiB  # S3's smallest part (but the last)
_TRANSIENT_CODES = frozenset(
    {"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable", "Throttling"}
)
_ABORT_TIMEOUT = 30.0


class S3Error(TaskLibraryError):
    """An S3 request failed; ``code`` is S3's error code when it answered."""

    def __init__(self, message: str, code: str | None = None) -> None:
        self.code = code
        super().__init__(message)


class S3TransientError(S3Error):
    """Throttling, a 5xx or a connection problem: another attempt may succeed."""


class S3IntegrityError(S3Error):
    """What arrived differs from what was sent (a length, an MD5 or an ETag)."""


@dataclass(frozen=True, slots=True)
class S3Object:
    """One listed object."""

    key: str
    size: int
    etag: str
    last_modified: dt.datetime | None


def _md5(data: bytes) -> tuple[str, str]:
    digest = hashlib.md5(data, usedforsecurity=False).digest()
    return digest.hex(), base64.b64encode(digest).decode()


def _read_part(path: Path, offset: int, size: int) -> bytes:
    with path.open("rb") as f:
        f.seek(offset)
        return f.read(size)


def _botocore() -> tuple[Any, Any]:
    try:
        import botocore.exceptions
        from aiobotocore.session import get_session
    except ImportError as exc:  # pragma: no cover - the s3 extra is missing
        raise TaskLibraryError(
            "S3Task needs aiobotocore: pip install 'dremioframe_async[s3]'"
        ) from exc
    return get_session, botocore.exceptions


def _mapped(exc: Exception, what: str, secrets: Sequence[str | None]) -> S3Error:
    _, errors = _botocore()
    if isinstance(exc, errors.FlexibleChecksumError):  # botocore's own CRC check of a body
        return S3IntegrityError(redact(f"{what}: {exc}", secrets))
    if isinstance(exc, errors.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        text = redact(f"{what}: {code}: {error.get('Message', exc)}", secrets)
        if code in _TRANSIENT_CODES or status >= 500:
            return S3TransientError(text, code)
        return S3Error(text, code)
    text = redact(f"{what}: {type(exc).__name__}: {exc}", secrets)
    # The network failing is worth another attempt; a configuration botocore refuses
    # (partial credentials, no region, a bad parameter) fails the same way every time.
    if isinstance(exc, errors.HTTPClientError | errors.IncompleteReadError):
        return S3TransientError(text)
    return S3Error(text)


class S3Task(Task):
    """One S3 operation: ``upload``, ``download``, ``list``, ``delete`` or ``copy``.

    - ``upload``: ``local_path`` to ``bucket/key``; returns the ETag.
    - ``download``: ``bucket/key`` to ``local_path``; returns the path.
    - ``list``: objects under ``prefix`` (default ``key`` or all); returns :class:`S3Object` s.
    - ``delete``: ``bucket/key``; returns the key.
    - ``copy``: ``bucket/key`` to ``dest_bucket`` (default ``bucket``) / ``dest_key``;
      server-side, in parts above ``multipart_threshold``; returns the new ETag.

    The S3 tasks of a run share one client per endpoint and credentials (so one
    connection pool), from the run's ``"s3"`` resource; ``client=`` names another
    run resource, or passes an open aiobotocore S3 client to use as it is.
    ``endpoint_url`` targets MinIO and other S3-compatible stores (path-style
    addressing is then the default). A failed abort of a multipart upload is
    logged and leaves the error that caused it as the task's error.

    :raises S3TransientError: throttling, 5xx, connection problems (retried by default).
    :raises S3IntegrityError: a length, MD5 or ETag mismatch (retried by default).
    :raises S3Error: anything else S3 refused (no such key, access denied ...), and a
        configuration botocore refuses (partial credentials, no region ...): not retried.
    :raises ValueError: bad arguments (at construction).
    """

    def __init__(
        self,
        name: str,
        operation: Operation,
        bucket: str,
        key: str | None = None,
        local_path: str | os.PathLike[str] | None = None,
        *,
        prefix: str | None = None,
        dest_bucket: str | None = None,
        dest_key: str | None = None,
        endpoint_url: str | None = None,
        region: str | None = None,
        addressing_style: Literal["auto", "path", "virtual"] | None = None,
        access_key_id: CredentialValue | None = None,
        secret_access_key: CredentialValue | None = None,
        session_token: CredentialValue | None = None,
        part_size: int = 8 * MiB,
        multipart_threshold: int = 8 * MiB,
        max_concurrency: int = 4,
        client: Any = None,
        **options: Any,
    ) -> None:
        _check(operation, key, local_path, dest_key, part_size, max_concurrency)
        self.operation, self.bucket, self.key = operation, bucket, key
        self.local_path = Path(local_path) if local_path is not None else None
        self.prefix, self.dest_bucket, self.dest_key = prefix, dest_bucket, dest_key
        self.endpoint_url, self.region, self.addressing_style = (
            endpoint_url,
            region,
            addressing_style,
        )
        self.access_key_id = access_key_id or Credential(param="aws_access_key_id")
        self.secret_access_key = secret_access_key or Credential(param="aws_secret_access_key")
        self.session_token = session_token or Credential(param="aws_session_token")
        self.part_size, self.multipart_threshold = part_size, multipart_threshold
        self.max_concurrency, self.client = max_concurrency, client
        options = client_resource_options(self, client, S3_RESOURCE, options)
        transient = (S3TransientError, S3IntegrityError)
        super().__init__(name, self._execute, **with_default_retry(options, transient))

    def __repr__(self) -> str:
        where = f"s3://{self.bucket}/{self.key or self.prefix or ''}"
        return f"<{type(self).__name__} {self.name!r} {self.operation} {where}>"

    # -- the client ---------------------------------------------------------------------

    def _client(self, context: RunContext | None) -> contextlib.AbstractAsyncContextManager[Any]:
        endpoint = setting(self.endpoint_url, context, "s3_endpoint_url", "AWS_ENDPOINT_URL_S3")
        settings = (
            endpoint,
            setting(self.region, context, "aws_region", "AWS_DEFAULT_REGION"),
            self.addressing_style or ("path" if endpoint else "auto"),
            resolve(self.access_key_id, context),
            resolve(self.secret_access_key, context),
            resolve(self.session_token, context),
        )
        opener = functools.partial(_open_client, *settings)
        return run_client(self.client, S3_RESOURCE, context, settings, opener)

    async def _execute(self, context: RunContext | None = None) -> Any:
        require_asyncio(type(self).__name__, "aiobotocore")
        secrets = [resolve(self.secret_access_key, context), resolve(self.session_token, context)]
        _, errors = _botocore()
        what = f"{self.operation} s3://{self.bucket}/{self.key or self.prefix or ''}"
        try:
            async with self._client(context) as client:
                return await getattr(self, f"_{self.operation}")(client)
        except (errors.BotoCoreError, errors.ClientError) as exc:
            raise _mapped(exc, what, secrets) from exc

    # -- operations ---------------------------------------------------------------------

    async def _upload(self, client: Any) -> str:
        assert self.local_path is not None
        assert self.key is not None
        size = (await anyio.Path(self.local_path).stat()).st_size
        if size <= self.multipart_threshold:
            data = await anyio.Path(self.local_path).read_bytes()
            hex_md5, b64_md5 = _md5(data)
            reply = await client.put_object(
                Bucket=self.bucket, Key=self.key, Body=data, ContentMD5=b64_md5
            )
            return _checked_etag(reply["ETag"], hex_md5, self.key)
        return await self._multipart_upload(client, size)

    async def _multipart_upload(self, client: Any, size: int) -> str:
        path, key = self.local_path, self.key
        assert path is not None
        assert key is not None
        upload = await client.create_multipart_upload(Bucket=self.bucket, Key=key)
        upload_id = upload["UploadId"]
        offsets = range(0, size, self.part_size)
        parts: list[dict[str, Any]] = [{} for _ in offsets]
        digests: list[bytes] = [b"" for _ in offsets]
        limiter = anyio.CapacityLimiter(self.max_concurrency)

        async def send(number: int, offset: int) -> None:
            async with limiter:  # bounds memory: at most max_concurrency parts read at once
                data = await anyio.to_thread.run_sync(_read_part, path, offset, self.part_size)
                hex_md5, b64_md5 = _md5(data)
                reply = await client.upload_part(
                    Bucket=self.bucket, Key=self.key, UploadId=upload_id,
                    PartNumber=number, Body=data, ContentMD5=b64_md5,
                )  # fmt: skip
                _checked_etag(reply["ETag"], hex_md5, f"{self.key} part {number}")
                parts[number - 1] = {"PartNumber": number, "ETag": reply["ETag"]}
                digests[number - 1] = bytes.fromhex(hex_md5)

        try:
            await _all_or_first_error(
                [functools.partial(send, n, o) for n, o in enumerate(offsets, 1)]
            )
            reply = await client.complete_multipart_upload(
                Bucket=self.bucket, Key=self.key, UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )  # fmt: skip
        except BaseException:
            await _abort(client, upload_id, {"Bucket": self.bucket, "Key": key})
            raise
        expected = hashlib.md5(b"".join(digests), usedforsecurity=False).hexdigest()
        return _checked_etag(reply["ETag"], f"{expected}-{len(parts)}", key)

    async def _download(self, client: Any) -> str:
        assert self.local_path is not None
        assert self.key is not None
        # A name of its own: two downloads to one path must not share a temporary.
        partial = anyio.Path(f"{self.local_path}.{uuid.uuid4().hex[:12]}.partial")
        md5 = hashlib.md5(usedforsecurity=False)
        received = 0
        try:
            reply = await client.get_object(Bucket=self.bucket, Key=self.key)
            async with await anyio.open_file(partial, "wb") as out, reply["Body"] as body:
                async for chunk in body.iter_chunks(MiB):
                    md5.update(chunk)
                    received += len(chunk)
                    await out.write(chunk)
            _check_download(reply, received, md5.hexdigest(), self.key)
            await partial.replace(self.local_path)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await partial.unlink(missing_ok=True)
            raise
        return str(self.local_path)

    async def _list(self, client: Any) -> list[S3Object]:
        prefix = self.prefix if self.prefix is not None else (self.key or "")
        found: list[S3Object] = []
        paginator = client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                found.append(
                    S3Object(
                        item["Key"], item["Size"], item["ETag"].strip('"'), item.get("LastModified")
                    )
                )
        return found

    async def _delete(self, client: Any) -> str:
        await client.delete_object(Bucket=self.bucket, Key=self.key)
        assert self.key is not None
        return self.key

    async def _copy(self, client: Any) -> str:
        target = {"Bucket": self.dest_bucket or self.bucket, "Key": self.dest_key}
        source = {"Bucket": self.bucket, "Key": self.key}
        head = await client.head_object(**source)
        if head["ContentLength"] <= self.multipart_threshold:
            reply = await client.copy_object(CopySource=source, **target)
            return str(reply["CopyObjectResult"]["ETag"]).strip('"')
        return await self._multipart_copy(client, source, target, head["ContentLength"])

    async def _multipart_copy(
        self, client: Any, source: dict[str, Any], target: dict[str, Any], size: int
    ) -> str:
        upload_id = (await client.create_multipart_upload(**target))["UploadId"]
        parts = []
        try:
            for number, offset in enumerate(range(0, size, self.part_size), start=1):
                last = min(offset + self.part_size, size) - 1
                reply = await client.upload_part_copy(
                    CopySource=source, CopySourceRange=f"bytes={offset}-{last}",
                    UploadId=upload_id, PartNumber=number, **target,
                )  # fmt: skip
                parts.append({"PartNumber": number, "ETag": reply["CopyPartResult"]["ETag"]})
            reply = await client.complete_multipart_upload(
                UploadId=upload_id, MultipartUpload={"Parts": parts}, **target
            )
        except BaseException:
            await _abort(client, upload_id, target)
            raise
        return str(reply["ETag"]).strip('"')


@asynccontextmanager
async def _open_client(
    endpoint: str | None,
    region: str | None,
    style: str,
    key_id: str | None,
    secret: str | None,
    token: str | None,
) -> AsyncIterator[Any]:
    get_session, _ = _botocore()
    from aiobotocore.config import AioConfig

    async with get_session().create_client(
        "s3",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        aws_session_token=token,
        config=AioConfig(s3={"addressing_style": style}),
    ) as client:
        yield client


async def _abort(client: Any, upload_id: str, target: dict[str, Any]) -> None:
    """Abort a multipart upload (shielded, bounded); a failure is logged, never raised.

    It runs while another error is on its way to the caller: that error, the
    reason the upload stopped, is the one the task must report and be retried on.
    """
    with anyio.CancelScope(shield=True), anyio.move_on_after(_ABORT_TIMEOUT) as scope:
        try:
            await client.abort_multipart_upload(UploadId=upload_id, **target)
            return
        except Exception as exc:  # the caller's error wins; this one is only reported
            problem = f"{type(exc).__name__}: {exc}"
    if scope.cancelled_caught:
        problem = f"no answer within {_ABORT_TIMEOUT:g} s"
    logger.warning(
        "abort of multipart upload %s (s3://%s/%s) failed: %s; its parts stay stored "
        "until it is aborted (or a lifecycle rule removes it)",
        upload_id, target.get("Bucket"), target.get("Key"), problem,
    )  # fmt: skip


async def _all_or_first_error(jobs: list[Callable[[], Awaitable[None]]]) -> None:
    """Run ``jobs`` concurrently; on the first failure cancel the rest and raise it as itself."""
    failed: list[Exception] = []

    async def run(job: Callable[[], Awaitable[None]]) -> None:
        try:
            await job()
        except Exception as exc:  # one error, not an ExceptionGroup, reaches the caller
            failed.append(exc)
            tg.cancel_scope.cancel()

    async with anyio.create_task_group() as tg:
        for job in jobs:
            tg.start_soon(run, job)
    if failed:
        raise failed[0]


def _checked_etag(etag: str, expected: str, what: str) -> str:
    got = etag.strip('"')
    if got != expected:
        raise S3IntegrityError(f"{what}: S3 stored ETag {got}, expected {expected}")
    return got


def _check_download(reply: dict[str, Any], received: int, md5: str, key: str) -> None:
    expected = reply.get("ContentLength")
    if expected is not None and received != expected:
        raise S3IntegrityError(f"{key}: received {received} bytes of {expected}")
    etag = str(reply.get("ETag", "")).strip('"')
    # A plain ETag is the body's MD5; a multipart one ("...-N") or an SSE-KMS one is not.
    if len(etag) == 32 and "-" not in etag and etag != md5:
        raise S3IntegrityError(f"{key}: MD5 {md5} differs from the ETag {etag}")


def _check(
    operation: str,
    key: str | None,
    local_path: object,
    dest_key: str | None,
    part_size: int,
    max_concurrency: int,
) -> None:
    if operation not in _OPERATIONS:
        raise ValueError(f"operation must be one of {', '.join(_OPERATIONS)}, got {operation!r}")
    if operation in ("upload", "download") and (key is None or local_path is None):
        raise ValueError(f"{operation} needs key and local_path")
    if operation in ("delete", "copy") and key is None:
        raise ValueError(f"{operation} needs key")
    if operation == "copy" and dest_key is None:
        raise ValueError("copy needs dest_key")
    if part_size < _MIN_PART:
        raise ValueError(f"part_size must be at least 5 MiB ({_MIN_PART}), S3's smallest part")
    if max_concurrency < 1:
        raise ValueError("max_concurrency must be >= 1")
