"""EmailTask delivering to an aiosmtpd server on loopback: STARTTLS, SSL, auth, headers."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import gc
import os
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dremioframe_async import Pipeline, TaskState
from dremioframe_async.tasks import (
    EmailError,
    EmailMaybeSent,
    EmailSent,
    EmailTask,
    EmailTransientError,
)

if os.environ.get("CI") == "true":  # CI installs the test extra: a missing server is a failure
    import aiosmtpd.controller as smtpd
else:
    smtpd = pytest.importorskip(
        "aiosmtpd.controller", reason="needs aiosmtpd: pip install -e '.[test]'"
    )
from aiosmtpd.smtp import AuthResult, LoginPassword

USER, PASSWORD = "mailer", "pw-77d1e0"


def free_port() -> int:
    # aiosmtpd's readiness check connects to the configured port, so port 0 cannot work.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    d = tmp_path_factory.mktemp("certs")
    (d / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return d / "cert.pem", d / "key.pem"


@dataclass
class Inbox:
    port: int
    client_tls: ssl.SSLContext | None = None
    envelopes: list[Any] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 OK"

    def message(self, i: int = -1) -> email.message.EmailMessage:
        raw = self.envelopes[i].content
        return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
        USER.encode(),
        PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False)  # not handled: the server answers 535


def start(inbox: Inbox, certs: tuple[Path, Path], mode: str) -> Any:
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(*certs)
    kwargs: dict[str, Any] = {"authenticator": authenticate}
    if mode == "starttls":
        kwargs |= {"tls_context": server_tls, "require_starttls": True, "auth_required": True}
    elif mode == "ssl":
        kwargs |= {"ssl_context": server_tls, "auth_require_tls": False}
    else:
        kwargs |= {"auth_require_tls": False}
    controller = smtpd.Controller(inbox, hostname="127.0.0.1", port=inbox.port, **kwargs)
    controller.start()
    inbox.client_tls = ssl.create_default_context(cafile=str(certs[0]))
    inbox.client_tls.check_hostname = False  # the certificate names localhost, we dial 127.0.0.1
    return controller


@pytest.fixture(params=["starttls", "ssl"])
def inbox(request: pytest.FixtureRequest, certs: tuple[Path, Path]) -> Iterator[Inbox]:
    box = Inbox(free_port())
    controller = start(box, certs, request.param)
    box.mode = request.param  # type: ignore[attr-defined]
    try:
        yield box
    finally:
        controller.stop()


@pytest.fixture
def plain_inbox(certs: tuple[Path, Path]) -> Iterator[Inbox]:
    box = Inbox(free_port())
    controller = start(box, certs, "none")
    try:
        yield box
    finally:
        controller.stop()


async def run_one(t: EmailTask, **run: Any) -> Any:
    return await Pipeline("p").add_task(t).run(**run)


@pytest.mark.asyncio
async def test_delivered_over_tls_with_auth_and_headers(
    inbox: Inbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMTP_PASSWORD", PASSWORD)
    report = tmp_path / "report.csv"
    report.write_text("a,b\n1,2\n")
    t = EmailTask(
        "mail",
        ["ops@example.com", "Data Team <data@example.com>"],
        "Nightly load: 3 tables",
        "All good.",
        html="<p>All <b>good</b>.</p>",
        sender="pipelines@example.com",
        cc="lead@example.com",
        bcc="audit@example.com",
        reply_to="noreply@example.com",
        attachments=[report],
        host="127.0.0.1",
        port=inbox.port,
        username=USER,
        security=inbox.mode,  # type: ignore[attr-defined]
        tls_context=inbox.client_tls,
    )
    result = await run_one(t)
    result.raise_for_status()
    sent = result["mail"]
    assert isinstance(sent, EmailSent)
    (envelope,) = inbox.envelopes
    assert envelope.mail_from == "pipelines@example.com"
    assert sorted(envelope.rcpt_tos) == sorted(
        ["ops@example.com", "data@example.com", "lead@example.com", "audit@example.com"]
    )
    msg = inbox.message()
    assert msg["Subject"] == "Nightly load: 3 tables"
    assert msg["From"] == "pipelines@example.com"
    assert msg["To"] == "ops@example.com, Data Team <data@example.com>"
    assert msg["Cc"] == "lead@example.com"
    assert msg["Bcc"] is None  # blind copies are envelope-only
    assert msg["Reply-To"] == "noreply@example.com"
    assert msg["Message-ID"] == sent.message_id
    assert msg.get_body(("plain",)).get_content().strip() == "All good."
    assert "<b>good</b>" in msg.get_body(("html",)).get_content()
    (attachment,) = list(msg.iter_attachments())
    assert attachment.get_filename() == "report.csv"
    assert attachment.get_content() == "a,b\n1,2\n"


@pytest.mark.asyncio
async def test_wrong_password_is_not_retried_and_not_shown(inbox: Inbox) -> None:
    t = EmailTask(
        "mail",
        "ops@example.com",
        "s",
        "b",
        sender="p@example.com",
        host="127.0.0.1",
        port=inbox.port,
        username=USER,
        password="wrong-secret-123",
        security=inbox.mode,  # type: ignore[attr-defined]
        tls_context=inbox.client_tls,
        retries=2,
    )
    result = await run_one(t)
    error = result.tasks["mail"].error
    assert isinstance(error, EmailError)
    assert not isinstance(error, EmailTransientError)
    assert result.tasks["mail"].attempts == 1
    assert "wrong-secret-123" not in f"{error} {t!r}"
    assert inbox.envelopes == []
    # The refused connection is dropped at once, not left waiting for the server's
    # TLS close_notify (a loop that ended first would leak its socket).
    assert open_sockets_to(inbox.port) == []
    del error, result
    gc.collect()


def open_sockets_to(port: int) -> list[socket.socket]:
    """This process's sockets still open to ``port`` on this machine."""
    found = []
    for obj in gc.get_objects():
        if isinstance(obj, socket.socket) and obj.fileno() != -1:
            try:
                peer = obj.getpeername()
            except OSError:
                continue
            if isinstance(peer, tuple) and peer[1] == port:
                found.append(obj)
    return found


@pytest.mark.asyncio
async def test_settings_from_context_and_body_from_a_function(plain_inbox: Inbox) -> None:
    t = EmailTask(
        "mail",
        "ops@example.com",
        lambda ctx: f"run {ctx.run_id}",
        lambda ctx: f"params: {sorted(ctx.params)}",
        security="none",
    )
    context = {
        "smtp_host": "127.0.0.1",
        "smtp_port": plain_inbox.port,
        "smtp_from": "ctx@example.com",
        "smtp_username": USER,
        "smtp_password": PASSWORD,
    }
    result = await run_one(t, context=context)
    result.raise_for_status()
    msg = plain_inbox.message()
    assert msg["Subject"].startswith("run ")
    assert msg["From"] == "ctx@example.com"


@pytest.mark.asyncio
async def test_connection_refused_is_transient_and_retried() -> None:
    t = EmailTask(
        "mail",
        "a@example.com",
        "s",
        "b",
        sender="p@example.com",
        host="127.0.0.1",
        port=free_port(),
        security="none",
        retries=1,
    )
    result = await run_one(t)
    assert isinstance(result.tasks["mail"].error, EmailTransientError)
    assert result.tasks["mail"].attempts == 2
    assert result.states["mail"] is TaskState.FAILED


def test_header_injection_and_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="line break"):
        EmailTask("m", "a@example.com", "hi\r\nBcc: victim@example.com", "b")
    with pytest.raises(ValueError, match="recipient"):
        EmailTask("m", [], "s", "b")
    with pytest.raises(ValueError, match="security"):
        EmailTask("m", "a@example.com", "s", "b", security="tls")  # type: ignore[arg-type]


@dataclass
class DropAfterData(Inbox):
    """Accepts every message, then drops the connection before answering DATA."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        server.transport.close()
        return "250 OK"


@pytest.mark.asyncio
async def test_a_lost_reply_to_data_is_maybe_sent_and_never_retried(
    certs: tuple[Path, Path],
) -> None:
    box = DropAfterData(free_port())
    controller = start(box, certs, "none")
    try:
        t = EmailTask(
            "mail", "a@example.com", "s", "b", sender="p@example.com",
            host="127.0.0.1", port=box.port, security="none", retries=3,
        )  # fmt: skip
        result = await run_one(t)
    finally:
        controller.stop()
    error = result.tasks["mail"].error
    assert isinstance(error, EmailMaybeSent), error
    assert not isinstance(error, EmailTransientError)
    assert "may have been sent" in str(error)
    assert result.tasks["mail"].attempts == 1
    assert len(box.envelopes) == 1  # one copy, not one per attempt


@dataclass
class DropAtRcpt(Inbox):
    """Drops the connection at the first RCPT: nothing was sent, so a retry is safe."""

    drops: int = 1

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if self.drops:
            self.drops -= 1
            server.transport.close()
        envelope.rcpt_tos.append(address)
        return "250 OK"


@pytest.mark.asyncio
async def test_a_connection_lost_before_data_is_retried(certs: tuple[Path, Path]) -> None:
    box = DropAtRcpt(free_port())
    controller = start(box, certs, "none")
    try:
        t = EmailTask(
            "mail", "a@example.com", "s", "b", sender="p@example.com",
            host="127.0.0.1", port=box.port, security="none", retries=2,
        )  # fmt: skip
        result = await run_one(t)
    finally:
        controller.stop()
    result.raise_for_status()
    assert result.tasks["mail"].attempts == 2
    assert len(box.envelopes) == 1


@pytest.mark.asyncio
async def test_a_fan_out_of_100_emails_logs_in_once_per_run(certs: tuple[Path, Path]) -> None:
    logins: list[bytes] = []

    def counting(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        logins.append(data.login)
        return authenticate(server, session, envelope, mechanism, data)

    box = Inbox(free_port())
    controller = smtpd.Controller(
        box, hostname="127.0.0.1", port=box.port, authenticator=counting, auth_require_tls=False
    )
    controller.start()
    try:
        p = Pipeline("mails", max_concurrency=16)
        for i in range(100):
            p.add_task(
                EmailTask(
                    f"m{i}",
                    f"u{i}@example.com",
                    f"s{i}",
                    "b",
                    sender="p@example.com",
                    host="127.0.0.1",
                    port=box.port,
                    username=USER,
                    password=PASSWORD,
                    security="none",
                )
            )
        result = await p.run()
    finally:
        controller.stop()
    result.raise_for_status()
    assert len(box.envelopes) == 100
    assert sorted(e.rcpt_tos[0] for e in box.envelopes) == sorted(
        f"u{i}@example.com" for i in range(100)
    )
    assert logins == [USER.encode()]  # one SMTP login for the whole run


@dataclass
class ClosesIdleConnections(Inbox):
    """Drops a connection when a second message starts on it, as a server whose idle
    timeout fired just before the client reused the connection."""

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        sent = getattr(session, "messages_started", 0)
        session.messages_started = sent + 1
        if sent:
            server.transport.close()
        envelope.mail_from = address
        return "250 OK"


@pytest.mark.asyncio
async def test_a_reused_connection_found_closed_is_replaced_before_sending(
    certs: tuple[Path, Path],
) -> None:
    box = ClosesIdleConnections(free_port())
    controller = start(box, certs, "none")
    try:
        tasks = [
            EmailTask(
                f"m{i}",
                "a@example.com",
                f"s{i}",
                "b",
                sender="p@example.com",
                host="127.0.0.1",
                port=box.port,
                security="none",
            )
            for i in range(3)
        ]
        tasks[0] >> tasks[1] >> tasks[2]
        result = await Pipeline("in-turn").add_task(tasks[0]).run()
    finally:
        controller.stop()
    result.raise_for_status()  # no retries asked for: the stale connection was replaced
    assert [str(box.message(i)["Subject"]) for i in range(3)] == ["s0", "s1", "s2"]
