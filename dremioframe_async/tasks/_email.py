"""Email as a task, on aiosmtplib: plain and HTML bodies, STARTTLS or SSL, auth from the env.

Connection settings come from the arguments, else from ``run(context={...})``
(``smtp_host``, ``smtp_port``, ``smtp_username``, ``smtp_password``, ``smtp_from``),
else from the environment (``SMTP_HOST``, ``SMTP_PORT``, ``SMTP_USERNAME``,
``SMTP_PASSWORD``, ``SMTP_FROM``). Only failures a later attempt can fix are
retried by default: connection errors, timeouts and 4xx (temporary) replies,
before the message itself went out.
"""

from __future__ import annotations

import functools
import mimetypes
import os
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

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
from ._smtp import DataLost, Security, Server, open_link, smtp_module

__all__ = ["EmailError", "EmailMaybeSent", "EmailSent", "EmailTask", "EmailTransientError"]

Text = str | Callable[[RunContext | None], str]
_DEFAULT_PORTS = {"ssl": 465, "starttls": 587, "none": 25}

SMTP_RESOURCE = "smtp"
"""The run resource an ``EmailTask`` sends through when given no ``client=``."""


class EmailError(TaskLibraryError):
    """The message could not be sent; ``code`` is the SMTP reply code when there is one."""

    def __init__(self, message: str, code: int | None = None) -> None:
        self.code = code
        super().__init__(message)


class EmailTransientError(EmailError):
    """A connection problem, a timeout or a 4xx reply: another attempt may succeed."""


class EmailMaybeSent(EmailError):
    """The connection broke after the message may have been accepted: never retried.

    The server may have delivered it; a second attempt could send a second copy.
    """


@dataclass(frozen=True, slots=True)
class EmailSent:
    """What the server accepted: the Message-ID and the recipients."""

    message_id: str
    recipients: tuple[str, ...]
    response: str


def _addresses(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _text(value: Text | None, context: RunContext | None) -> str | None:
    return value(context) if callable(value) else value


class EmailTask(Task):
    """Send one email; return :class:`EmailSent`.

    ``body`` (plain text) and ``html`` (an HTML alternative) may be functions
    of the run context, like ``subject``. ``security`` is ``"starttls"``
    (required), ``"ssl"`` (implicit TLS, port 465) or ``"none"``; by default
    port 465 means SSL and otherwise STARTTLS is used when the server offers
    it. ``attachments`` are file paths (read when the task runs). The password
    is never shown in reprs or errors. ``smtp_timeout`` bounds each wait for a
    server reply; the task's ``timeout=`` bounds the whole attempt.

    Messages go through the run's ``"smtp"`` resource: one connection and one
    login per server per run, however many emails the run sends (``client=``
    names another run resource, a :class:`~dremioframe_async.tasks.ClientPool`).
    A connection lost once ``DATA`` started may have delivered the message: that
    is :class:`EmailMaybeSent`, never retried, so nobody gets two copies.

    :raises EmailTransientError: connection problems, timeouts, 4xx replies (retried).
    :raises EmailMaybeSent: the connection broke during ``DATA`` (not retried).
    :raises EmailError: anything else the server refused (bad auth, 5xx).
    :raises ValueError: no recipient, or a header with a line break (at construction).
    """

    def __init__(
        self,
        name: str,
        to: str | Sequence[str],
        subject: Text,
        body: Text,
        *,
        html: Text | None = None,
        sender: str | None = None,
        cc: str | Sequence[str] | None = None,
        bcc: str | Sequence[str] | None = None,
        reply_to: str | None = None,
        attachments: Sequence[str | os.PathLike[str]] = (),
        host: str | None = None,
        port: int | None = None,
        username: str | None = None,
        password: CredentialValue | None = None,
        security: Security | None = None,
        tls_context: ssl.SSLContext | None = None,
        smtp_timeout: float = 60.0,
        client: str | None = None,
        **options: Any,
    ) -> None:
        self.to, self.cc, self.bcc = _addresses(to), _addresses(cc), _addresses(bcc)
        if not (self.to or self.cc or self.bcc):
            raise ValueError("an email needs at least one recipient")
        if security not in (None, "starttls", "ssl", "none"):
            raise ValueError(f"security must be 'starttls', 'ssl' or 'none', got {security!r}")
        self.subject, self.body, self.html = subject, body, html
        self.sender, self.reply_to = sender, reply_to
        self.attachments = [Path(a) for a in attachments]
        self.host, self.port, self.username, self.security = host, port, username, security
        self.password = (
            password
            if password is not None
            else Credential(param="smtp_password", env="SMTP_PASSWORD")
        )
        self.tls_context, self.smtp_timeout = tls_context, smtp_timeout
        for value in (
            *self.to,
            *self.cc,
            *self.bcc,
            sender,
            reply_to,
            *([subject] if isinstance(subject, str) else []),
        ):
            if value is not None and ("\r" in value or "\n" in value):
                raise ValueError(f"a header value cannot contain a line break: {value!r}")
        self.client = client
        options = client_resource_options(self, client, SMTP_RESOURCE, options)
        transient = (EmailTransientError,)
        super().__init__(name, self._execute, **with_default_retry(options, transient))

    def __repr__(self) -> str:
        count = len(self.to) + len(self.cc) + len(self.bcc)
        return f"<{type(self).__name__} {self.name!r} to {count} recipient(s)>"

    def _server(self, context: RunContext | None) -> Server:
        security = setting(self.security, context, "smtp_security", "SMTP_SECURITY")
        port = setting(self.port, context, "smtp_port", "SMTP_PORT")
        port = int(port) if port is not None else _DEFAULT_PORTS.get(security or "starttls", 587)
        if security is None and port == 465:
            security = "ssl"
        return Server(
            setting(self.host, context, "smtp_host", "SMTP_HOST", "localhost"),
            port,
            security,
            setting(self.username, context, "smtp_username", "SMTP_USERNAME"),
            resolve(self.password, context),
        )

    async def _message(self, server: Server, context: RunContext | None) -> EmailMessage:
        message = EmailMessage()
        sender = setting(self.sender, context, "smtp_from", "SMTP_FROM") or server.username
        if not sender:
            raise EmailError(f"{self.name}: no sender (give sender=, or set SMTP_FROM)")
        message["From"] = sender
        for header, values in (("To", self.to), ("Cc", self.cc)):
            if values:
                message[header] = ", ".join(values)
        if self.reply_to:
            message["Reply-To"] = self.reply_to
        message["Subject"] = _text(self.subject, context) or ""
        message["Message-ID"] = make_msgid()
        message.set_content(_text(self.body, context) or "")
        html = _text(self.html, context)
        if html is not None:
            message.add_alternative(html, subtype="html")
        for path in self.attachments:
            data = await anyio.Path(path).read_bytes()
            kind = (mimetypes.guess_type(path.name)[0] or "application/octet-stream").split("/", 1)
            message.add_attachment(data, maintype=kind[0], subtype=kind[1], filename=path.name)
        return message

    async def _execute(self, context: RunContext | None = None) -> EmailSent:
        require_asyncio(type(self).__name__, "aiosmtplib")
        server = self._server(context)
        message = await self._message(server, context)
        recipients = [*self.to, *self.cc, *self.bcc]
        smtp = smtp_module()
        opener = functools.partial(open_link, server, self.tls_context, self.smtp_timeout)
        key = (server, self.tls_context, self.smtp_timeout)
        try:
            async with run_client(self.client, SMTP_RESOURCE, context, key, opener) as link:
                response = await link.send(message, str(message["From"]), recipients)
        except DataLost as lost:
            raise EmailMaybeSent(
                redact(
                    f"{server.host}:{server.port}: the connection broke during DATA "
                    f"({lost}); the message may have been sent, so it is not sent again",
                    [server.password],
                )
            ) from lost.cause
        except smtp.SMTPException as exc:
            raise self._mapped(exc, server) from exc
        except OSError as exc:
            raise EmailTransientError(
                redact(f"{server.host}:{server.port}: {exc}", [server.password])
            ) from exc
        return EmailSent(str(message["Message-ID"]), tuple(recipients), response)

    def _mapped(self, exc: Exception, server: Server) -> EmailError:
        smtp = smtp_module()
        code = getattr(exc, "code", None)
        text = redact(
            f"{server.host}:{server.port}: {type(exc).__name__}: {exc}", [server.password]
        )
        temporary = isinstance(code, int) and 400 <= code < 500
        connection = isinstance(
            exc, smtp.SMTPConnectError | smtp.SMTPServerDisconnected | smtp.SMTPTimeoutError
        )
        if (temporary or connection) and not isinstance(exc, smtp.SMTPAuthenticationError):
            return EmailTransientError(text, code)
        return EmailError(text, code)
