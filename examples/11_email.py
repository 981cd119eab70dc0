"""EmailTask: a plain and HTML message with an attachment, over SMTP.

The example starts a local aiosmtpd server (pip install aiosmtpd) and prints what it
received. Against a real server, set SMTP_HOST, SMTP_PORT, SMTP_USERNAME, SMTP_PASSWORD
and SMTP_FROM (or pass them to run(context={"smtp_host": ...})) and drop the server.
"""

from __future__ import annotations

import email
import email.policy
import socket
import tempfile
from pathlib import Path

import anyio
from aiosmtpd.controller import Controller

from dremioframe_async import Pipeline
from dremioframe_async.tasks import EmailTask


class Inbox:
    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        self.messages.append(
            email.message_from_bytes(envelope.content, policy=email.policy.default)
        )
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def main() -> None:
    inbox, port = Inbox(), free_port()
    server = Controller(inbox, hostname="127.0.0.1", port=port)
    server.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            report = Path(tmp, "daily.csv")
            report.write_text("table,rows\norders,1200\n")
            mail = EmailTask(
                "mail",
                ["data-team@example.com"],
                lambda ctx: f"Daily load {ctx.run_id[:8]} finished",
                "1200 rows loaded.",
                html="<p><b>1200</b> rows loaded.</p>",
                attachments=[report],
                security="none",  # the local server has no TLS; real ones use STARTTLS or SSL
            )
            settings = {"smtp_host": "127.0.0.1", "smtp_port": port, "smtp_from": "etl@example.com"}
            result = await Pipeline("mail").add_task(mail).run(context=settings)
            result.raise_for_status()
    finally:
        server.stop()
    (msg,) = inbox.messages
    print("received:", msg["Subject"], "from", msg["From"], "to", msg["To"])
    print("parts:", [part.get_content_type() for part in msg.walk()][1:])


if __name__ == "__main__":
    anyio.run(main)
