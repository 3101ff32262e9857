"""Email through SMTP (aiosmtplib): messages for letters, and a small pool of reused
connections with STARTTLS/TLS and login from the settings.

Errors are reduced to their kind and SMTP code before they are stored or logged, since
aiosmtplib's messages can carry an email address.
"""

import asyncio
import base64
import email.policy
import time
import uuid
from dataclasses import dataclass
from email.header import Header
from email.headerregistry import Address
from email.utils import format_datetime, formataddr, quote
from functools import lru_cache

import aiosmtplib

from settings import Settings

IDLE_CHECK_SECONDS = 10.0  # a connection idle longer than this is checked with NOOP first


class MailError(Exception):
    """A failed send, described without personal data. `permanent` errors (5xx) are not
    worth retrying: the server has refused the message or the recipient."""

    def __init__(self, kind: str, code: int | None = None, permanent: bool = False):
        super().__init__(kind, code, permanent)
        self.kind, self.code, self.permanent = kind, code, permanent

    def __str__(self) -> str:
        return f"{self.kind} {self.code}" if self.code else self.kind


def describe(error: BaseException) -> MailError:
    code = getattr(error, "code", None)
    code = code if isinstance(code, int) and code > 0 else None
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused) and error.recipients:
        code = error.recipients[0].code
    permanent = code is not None and 500 <= code < 600
    if isinstance(error, aiosmtplib.SMTPAuthenticationError):
        permanent = False  # a configuration fault: keep the letter, retry after the fix
    return MailError(kind=type(error).__name__, code=code, permanent=permanent)


@dataclass(frozen=True)
class Outgoing:
    """A message ready for the wire: who it is from and to, and its bytes."""

    sender: str
    recipient: str
    data: bytes


def _header(name: str, value: str) -> str:
    """One header line, RFC 2047-encoded when it is not ASCII and folded at 78 columns."""
    charset = "us-ascii" if value.isascii() else "utf-8"
    return f"{name}: {Header(value, charset, header_name=name).encode(linesep=NL)}{NL}"


NL = "\n"  # as email.generator writes; aiosmtplib sends every line ending as CRLF


@lru_cache(maxsize=4096)
def _address(name: str, address: str) -> str:
    """ "Name" <address>. A name that is not ASCII is written by the email package's modern
    policy, which encodes it word by word so that every reader decodes it alike; that is
    slow, so the result is kept (the school's name is on every message)."""
    if name.isascii():
        return formataddr((name, address))
    value = str(Address(display_name=name, addr_spec=address))
    return email.policy.SMTP.fold("To", email.policy.SMTP.header_factory("To", value))[4:-2]


def _base64(data: bytes) -> str:
    return base64.encodebytes(data).decode("ascii")  # lines of 76, each ending in "\n"


def _multipart(subtype: str, parts: list[str]) -> tuple[str, str]:
    """The Content-Type header and body of a multipart. The boundary holds "=_", which
    base64 and the part headers written here never contain."""
    boundary = f"=_{uuid.uuid4().hex}"
    body = "".join(f"--{boundary}{NL}{part}" for part in parts) + f"--{boundary}--{NL}"
    return f'Content-Type: multipart/{subtype};{NL} boundary="{boundary}"{NL}', body


def _text_part(subtype: str, text: str) -> str:
    return (
        f'Content-Type: text/{subtype}; charset="utf-8"{NL}'
        f"Content-Transfer-Encoding: base64{NL}{NL}{_base64(text.encode())}"
    )


def build_message(
    *,
    sender: str,
    sender_name: str,
    reply_to: str | None,
    to_name: str,
    to_address: str,
    subject: str,
    text: str,
    html: str | None,
    pdf: bytes | None,
    pdf_name: str,
    message_id: str,
    sent_at,
) -> Outgoing:
    """The letter as an email: its text (and HTML) with the PDF attached, as the standard
    library's MIME classes would write it (base64 parts), but written directly: flattening
    a message with the email package took longer than sending it."""
    parts = [_text_part("plain", text)]
    if html:
        parts.append(_text_part("html", html))
    content_type, body = _multipart("alternative", parts)
    if pdf is not None:
        attachment = (
            f"Content-Type: application/pdf{NL}"
            f"Content-Transfer-Encoding: base64{NL}"
            f'Content-Disposition: attachment; filename="{quote(pdf_name)}"{NL}{NL}'
            f"{_base64(pdf)}"
        )
        content_type, body = _multipart("mixed", [f"{content_type}{NL}{body}", attachment])
    headers = [
        content_type,
        f"MIME-Version: 1.0{NL}",
        f"From: {_address(sender_name, sender)}{NL}",
        f"To: {_address(to_name, to_address)}{NL}",
    ]
    if reply_to:
        headers.append(f"Reply-To: {reply_to}{NL}")
    headers += [
        _header("Subject", subject),
        f"Message-ID: {message_id}{NL}",
        f"Date: {format_datetime(sent_at)}{NL}",
        f"Auto-Submitted: auto-generated{NL}",
    ]
    data = "".join(headers) + NL + body
    return Outgoing(sender=sender, recipient=to_address, data=data.encode())


class _Connection:
    def __init__(self, client: aiosmtplib.SMTP):
        self.client = client
        self.last_used = 0.0


class Mailer:
    """Sends messages over up to `smtp_connections` SMTP connections, each kept open and
    reused. One message at a time per connection (SMTP has no pipelining of messages)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._idle: asyncio.Queue[_Connection] | None = None
        self._made = 0
        self._lock: asyncio.Lock | None = None

    def _client(self) -> aiosmtplib.SMTP:
        s = self.settings
        return aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username,
            password=s.smtp_password.get_secret_value() if s.smtp_password else None,
            use_tls=s.smtp_tls,
            start_tls=False if s.smtp_tls else s.smtp_starttls,
            timeout=s.smtp_timeout_seconds,
            cert_bundle=str(s.smtp_ca_file) if s.smtp_ca_file else None,
        )

    async def _acquire(self) -> _Connection:
        if self._idle is None:
            self._idle = asyncio.Queue()
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._idle.empty() and self._made < max(1, self.settings.smtp_connections):
                self._made += 1
                return _Connection(self._client())
        return await self._idle.get()

    def _release(self, connection: _Connection) -> None:
        connection.last_used = time.monotonic()
        self._idle.put_nowait(connection)

    async def _ready(self, connection: _Connection) -> None:
        client = connection.client
        if client.is_connected and time.monotonic() - connection.last_used > IDLE_CHECK_SECONDS:
            try:
                await client.noop()
            except aiosmtplib.SMTPException:
                client.close()
        if not client.is_connected:
            await client.connect()

    async def send(self, message: Outgoing) -> None:
        """Send one message, or raise MailError (nothing personal in it)."""
        connection = await self._acquire()
        try:
            await self._ready(connection)
            await connection.client.sendmail(message.sender, [message.recipient], message.data)
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as error:
            connection.client.close()
            raise describe(error) from None
        finally:
            self._release(connection)

    async def close(self) -> None:
        if self._idle is None:
            return
        while not self._idle.empty():
            connection = self._idle.get_nowait()
            if connection.client.is_connected:
                try:
                    await connection.client.quit()
                except (aiosmtplib.SMTPException, OSError):
                    connection.client.close()
        self._made = 0
