"""One SMTP connection for a run: connected and logged in once, one message at a time.

A send goes in three phases: ``MAIL FROM``, ``RCPT TO`` per recipient, then
``DATA``. A connection lost before ``DATA`` sent nothing, so another attempt is
safe; once ``DATA`` started the server may have accepted the message even if its
reply never arrived, so that loss is reported as :class:`DataLost` (the task
says "maybe sent" and never retries it, as ``HttpTask`` does for a lost reply to
a POST).
"""

from __future__ import annotations

import contextlib
import functools
import ssl
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, Literal

import anyio

from ._common import TaskLibraryError

__all__ = ["DataLost", "Server", "SmtpLink", "open_link", "smtp_module"]

Security = Literal["starttls", "ssl", "none"]
_QUIT_TIMEOUT = 5.0


def smtp_module() -> Any:
    """aiosmtplib, or a clear error naming the extra that installs it."""
    try:
        import aiosmtplib
    except ImportError as exc:  # pragma: no cover - the email extra is missing
        raise TaskLibraryError(
            "EmailTask needs aiosmtplib: pip install 'dremioframe_async[email]'"
        ) from exc
    return aiosmtplib


@dataclass(frozen=True, slots=True)
class Server:
    """Where and as whom to send (the password is never shown)."""

    host: str
    port: int
    security: Security | None
    username: str | None
    password: str | None

    def __repr__(self) -> str:
        return f"Server({self.host}:{self.port}, security={self.security}, user={self.username})"


class DataLost(TaskLibraryError):
    """The connection broke during ``DATA``: the message may have been delivered."""

    def __init__(self, cause: Exception) -> None:
        self.cause = cause
        super().__init__(f"{type(cause).__name__}: {cause}")


class SmtpLink:
    """One connection to one server, opened on first use and again after a failure.

    ``connects`` counts the connections made (each one logs in once when the
    server has a username).
    """

    def __init__(self, server: Server, tls_context: ssl.SSLContext | None, timeout: float) -> None:
        self.server, self.tls_context, self.timeout = server, tls_context, timeout
        self.connects = 0
        self._smtp: Any = None
        self._lock = anyio.Lock()

    async def send(self, message: EmailMessage, sender: str, recipients: Sequence[str]) -> str:
        """Send ``message``; the server's reply to ``DATA``.

        :raises DataLost: the connection broke once ``DATA`` had started.
        :raises aiosmtplib.SMTPException: anything else (nothing was delivered).
        """
        async with self._lock:  # one SMTP conversation at a time on one connection
            try:
                return await self._send_once(message, sender, recipients)
            except BaseException:
                # The conversation's state is unknown (an error, a timeout, a
                # cancellation): the next message starts on a fresh connection.
                self._drop()
                raise

    async def _send_once(
        self, message: EmailMessage, sender: str, recipients: Sequence[str]
    ) -> str:
        reused = self._smtp is not None and self._smtp.is_connected
        try:
            return await self._transaction(await self._connected(), message, sender, recipients)
        except smtp_module().SMTPServerDisconnected:
            if not reused:
                raise
        # A kept connection the server had closed (its idle timeout): nothing was
        # sent (a loss during DATA is DataLost), so the message goes on a fresh one.
        self._drop()
        return await self._transaction(await self._connected(), message, sender, recipients)

    async def _transaction(
        self, smtp: Any, message: EmailMessage, sender: str, recipients: Sequence[str]
    ) -> str:
        lib = smtp_module()
        await smtp.mail(sender)
        refused = []
        for address in recipients:
            try:
                await smtp.rcpt(address)
            except lib.SMTPRecipientRefused as exc:
                refused.append(exc)
        if len(refused) == len(recipients):
            raise lib.SMTPRecipientsRefused(refused)
        flat = lib.email.flatten_message(message)
        try:
            response = await smtp.data(flat)
        except (lib.SMTPServerDisconnected, lib.SMTPTimeoutError, OSError) as exc:
            raise DataLost(exc) from exc
        return str(response)

    async def _connected(self) -> Any:
        if self._smtp is not None and self._smtp.is_connected:
            return self._smtp
        self._drop()
        server = self.server
        smtp = smtp_module().SMTP(
            hostname=server.host,
            port=server.port,
            use_tls=server.security == "ssl",
            start_tls={"starttls": True, "none": False}.get(server.security or ""),
            tls_context=self.tls_context,
            timeout=self.timeout,  # per server reply; the task's timeout= bounds the attempt
        )
        self.connects += 1
        # A connection that fails before it is ready is aborted rather than closed,
        # by aiosmtplib's own error path too: a closed TLS connection waits for the
        # server's close_notify, and a loop that ends first (a script, a test)
        # leaves its socket open, reported as unclosed at some later collection.
        smtp.close = functools.partial(_abort, smtp)
        try:
            await smtp.connect()  # and STARTTLS, as the settings say
            if server.username:
                await smtp.login(server.username, server.password or "")
        except BaseException:
            _abort(smtp)
            raise
        finally:
            del smtp.close  # a ready connection closes gracefully (after QUIT)
        self._smtp = smtp
        return smtp

    def _drop(self) -> None:
        if self._smtp is not None:
            self._smtp.close()
            self._smtp = None

    async def aclose(self) -> None:
        """Say QUIT (bounded) and close."""
        smtp, self._smtp = self._smtp, None
        if smtp is None or not smtp.is_connected:
            return
        with anyio.move_on_after(_QUIT_TIMEOUT), contextlib.suppress(Exception):
            await smtp.quit()
        smtp.close()


def _abort(smtp: Any) -> None:
    """Drop ``smtp``'s connection at once, without the TLS shutdown."""
    transport = smtp.transport
    if transport is not None and not transport.is_closing():
        transport.abort()
    type(smtp).close(smtp)  # resets its state and releases its connect lock


@contextlib.asynccontextmanager
async def open_link(
    server: Server, tls_context: ssl.SSLContext | None, reply_timeout: float
) -> AsyncIterator[SmtpLink]:
    """An :class:`SmtpLink` (it connects on its first send), closed on the way out."""
    link = SmtpLink(server, tls_context, reply_timeout)
    try:
        yield link
    finally:
        with anyio.CancelScope(shield=True):
            await link.aclose()
