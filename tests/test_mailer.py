"""SMTP delivery against a real in-process server (aiosmtpd on 127.0.0.1): plain, STARTTLS,
implicit TLS, AUTH, and every failure mapped to a DeliveryError with the right ``retryable``.

The TLS certificate is self-signed, generated per test session with ``openssl``.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from helpers import free_port

from aggregator.config import SmtpConfig
from aggregator.digest_view import DigestView, Entry, Outlet
from aggregator.errors import DeliveryError
from aggregator.mailer import send_message
from aggregator.render import build_message, render_digest

MESSAGE = (
    b"Subject: Test\r\nFrom: a@example.org\r\nTo: b@example.org\r\n\r\nHallo Welt\r\n"
    b".a line that starts with a dot (dot-stuffed on the wire)\r\n..two dots\r\n"
)
SECRET = "hunter2-Sehr-Geheim"


class Keep:
    """Stores every accepted message; can be told to answer RCPT or DATA differently."""

    def __init__(
        self, rcpt_replies: dict[str, str] | None = None, data_reply: str = "250 OK"
    ) -> None:
        self.received: list[bytes] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.rcpt_replies = rcpt_replies or {}
        self.data_reply = data_reply

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: ANN001
        reply = self.rcpt_replies.get(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001
        if not self.data_reply.startswith("250"):
            return self.data_reply
        self.received.append(envelope.original_content)
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 OK"


def authenticator(server, session, envelope, mechanism, auth_data):  # noqa: ANN001
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == b"bot"
        and auth_data.password == SECRET.encode()
    )
    return AuthResult(success=ok, handled=False)


@pytest.fixture(scope="session")
def cert(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for localhost / 127.0.0.1: (cert.pem, key.pem)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],  # fmt: skip
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@pytest.fixture
def server_tls(cert) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(*cert)
    return ctx


@pytest.fixture
def client_tls(cert) -> ssl.SSLContext:
    """A client context that trusts exactly the test certificate (and still checks names)."""
    return ssl.create_default_context(cafile=str(cert[0]))


def _start(handler: Keep, **kwargs) -> Controller:
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), **kwargs)
    controller.start()
    return controller


@pytest.fixture
def server() -> Iterator[tuple[Controller, Keep]]:
    handler = Keep()
    controller = _start(handler, authenticator=authenticator, auth_require_tls=False)
    yield controller, handler
    controller.stop()


def _cfg(port: int, **kw) -> SmtpConfig:
    return SmtpConfig(host="127.0.0.1", port=port, timeout=10, **kw)


def _failure(handler: Keep, **send_kw) -> DeliveryError:
    """Send to a server running ``handler`` and return the DeliveryError that must follow."""
    controller = _start(handler)
    try:
        with pytest.raises(DeliveryError) as info:
            _send(_cfg(controller.port), **send_kw)
    finally:
        controller.stop()
    return info.value


def _send(cfg: SmtpConfig, message: bytes = MESSAGE, **kw) -> None:
    kw.setdefault("recipients", ["b@example.org"])
    send_message(cfg, sender="a@example.org", message=message, **kw)


# ---------------------------------------------------------------- success paths


def test_sends_the_exact_bytes(server) -> None:
    controller, handler = server
    _send(_cfg(controller.port))
    assert handler.received == [MESSAGE]
    assert handler.envelopes == [("a@example.org", ["b@example.org"])]


def test_a_rendered_digest_arrives_byte_identical(server) -> None:
    controller, handler = server
    at = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
    view = DigestView(
        name="abend",
        subject="Tagesüberblick: Brücke in Wellersdorf wieder offen",
        period_start_at=None,
        period_end_at=at,
        timezone="Europe/Vienna",
        entries=(
            Entry(
                cluster_id=1,
                headline="Brücke in Wellersdorf nach Sanierung wieder für Verkehr frei",
                link="https://wellersdorfer-anzeiger.example/bruecke",
                publisher="Wellersdorfer Anzeiger",
                summary="Zwei Jahre Bauzeit, drei Monate Verzug. Ab heute rollt der Verkehr.",
                published_at=at,
                outlets=(Outlet("Donaupost", "https://donaupost.example/b", "Brücke offen", True),),
                new_comments=2,
                follow_up_to=None,
                is_update=False,
            ),
        ),
    )
    subject, html, text = render_digest(view)
    raw = build_message(
        view,
        subject=subject,
        html=html,
        text=text,
        sender="Überblick <digest@news.example>",
        recipients=["b@example.org", "c@example.org"],
        message_id="<digest.abend.1@news.example>",
        date=at,
        list_unsubscribe=None,
    )
    _send(_cfg(controller.port), raw, recipients=["b@example.org", "c@example.org"])
    assert handler.received == [raw]
    assert handler.envelopes == [("a@example.org", ["b@example.org", "c@example.org"])]


def test_login(server) -> None:
    controller, handler = server
    _send(_cfg(controller.port, username="bot", password=SECRET))
    assert handler.received == [MESSAGE]


def test_starttls_with_login(server_tls, client_tls) -> None:
    handler = Keep()
    # auth_require_tls stays True: AUTH is only offered after STARTTLS succeeded
    controller = _start(
        handler, tls_context=server_tls, require_starttls=True, authenticator=authenticator
    )
    try:
        cfg = _cfg(controller.port, tls="starttls", username="bot", password=SECRET)
        _send(cfg, ssl_context=client_tls)
    finally:
        controller.stop()
    assert handler.received == [MESSAGE]


def test_implicit_tls(server_tls, client_tls) -> None:
    handler = Keep()
    controller = _start(handler, ssl_context=server_tls)
    try:
        _send(_cfg(controller.port, tls="implicit"), ssl_context=client_tls)
    finally:
        controller.stop()
    assert handler.received == [MESSAGE]


# ---------------------------------------------------------------- permanent failures


def test_wrong_password_is_final_and_never_echoed(server) -> None:
    controller, handler = server
    wrong = "hunter2-wrong-Passwort"
    cfg = _cfg(controller.port, username="bot", password=wrong)
    with pytest.raises(DeliveryError) as info:
        _send(cfg)
    err = info.value
    assert err.retryable is False
    assert "authentication" in str(err) and "535" in str(err)
    assert f"127.0.0.1:{controller.port}" in str(err)
    assert wrong not in str(err) and "hunter2" not in str(err)
    assert err.__cause__ is None and err.__suppress_context__  # no chained detail to leak
    assert "\n" not in str(err)
    assert handler.received == []


def test_self_signed_certificate_is_rejected_by_default(server_tls) -> None:
    handler = Keep()
    controller = _start(handler, ssl_context=server_tls)
    try:
        with pytest.raises(DeliveryError) as info:
            _send(_cfg(controller.port, tls="implicit"))  # default, verifying context
    finally:
        controller.stop()
    assert info.value.retryable is False
    assert "certificate" in str(info.value)
    assert handler.received == []


def test_starttls_not_offered_is_final(server) -> None:
    controller, handler = server  # plain server, no tls_context
    with pytest.raises(DeliveryError) as info:
        _send(_cfg(controller.port, tls="starttls"))
    assert info.value.retryable is False
    assert "does not offer STARTTLS" in str(info.value)
    assert handler.received == []


def test_all_recipients_rejected_permanently() -> None:
    handler = Keep(rcpt_replies={"b@example.org": "550 5.1.1 no such user"})
    error = _failure(handler)
    assert error.retryable is False
    assert "550" in str(error) and "no such user" in str(error)


def test_partial_rejection_is_final_to_avoid_duplicates() -> None:
    handler = Keep(rcpt_replies={"x@example.org": "550 5.1.1 no such user"})
    error = _failure(handler, recipients=["b@example.org", "x@example.org"])
    assert error.retryable is False
    assert "accepted for 1 of 2" in str(error) and "x@example.org (550)" in str(error)
    assert handler.received == [MESSAGE]  # b@ got it: a retry would mail b@ twice


def test_data_rejected_permanently() -> None:
    error = _failure(Keep(data_reply="554 5.7.1 message looks like spam"))
    assert error.retryable is False
    assert "554" in str(error)


def test_no_recipients_is_final() -> None:
    with pytest.raises(DeliveryError) as info:
        _send(_cfg(free_port()), recipients=[])
    assert info.value.retryable is False


# ---------------------------------------------------------------- transient failures


def test_connection_refused_is_retryable() -> None:
    cfg = _cfg(free_port())  # nothing listens there
    with pytest.raises(DeliveryError) as info:
        _send(cfg)
    assert info.value.retryable is True
    assert f"127.0.0.1:{cfg.port}" in str(info.value)
    assert "refused" in str(info.value)


def test_temporary_recipient_rejection_is_retryable() -> None:
    error = _failure(Keep(rcpt_replies={"b@example.org": "451 4.7.1 greylisted, come back"}))
    assert error.retryable is True
    assert "451" in str(error)


def test_temporary_data_rejection_is_retryable() -> None:
    error = _failure(Keep(data_reply="452 4.3.1 insufficient system storage"))
    assert error.retryable is True
    assert "452" in str(error)


class _RawServer:
    """A TCP listener that greets (or not) and then misbehaves."""

    def __init__(self, greeting: bytes | None) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.greeting = greeting
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            if self.greeting is not None:
                conn.sendall(self.greeting)
                conn.close()  # hang up right after the greeting
                return
            self.done.wait(10)  # say nothing until the client gives up

    def close(self) -> None:
        self.done.set()
        self.thread.join(5)
        self.sock.close()


def test_server_hanging_up_is_retryable() -> None:
    raw = _RawServer(b"220 flaky.example ESMTP\r\n")
    try:
        with pytest.raises(DeliveryError) as info:
            _send(_cfg(raw.port))
    finally:
        raw.close()
    assert info.value.retryable is True
    assert f"127.0.0.1:{raw.port}" in str(info.value) and "disconnected" in str(info.value)


def test_silent_server_times_out_retryably() -> None:
    raw = _RawServer(None)
    try:
        with pytest.raises(DeliveryError) as info:
            _send(_cfg(raw.port), timeout_s=0.5)
    finally:
        raw.close()
    assert info.value.retryable is True
    assert "timed out" in str(info.value)


def test_greeting_421_is_retryable() -> None:
    raw = _RawServer(b"421 4.3.2 too busy, try later\r\n")
    try:
        with pytest.raises(DeliveryError) as info:
            _send(_cfg(raw.port))
    finally:
        raw.close()
    assert info.value.retryable is True
    assert "421" in str(info.value)


def test_password_echoed_by_the_server_is_scrubbed() -> None:
    """Even a server that quotes the credentials back never gets them into the error."""
    import base64

    echo = base64.b64encode(f"\0bot\0{SECRET}".encode()).decode()
    handler = Keep(rcpt_replies={"b@example.org": f"550 rejected {SECRET} / {echo}"})
    controller = _start(handler, authenticator=authenticator, auth_require_tls=False)
    try:
        with pytest.raises(DeliveryError) as info:
            _send(_cfg(controller.port, username="bot", password=SECRET))
    finally:
        controller.stop()
    assert SECRET not in str(info.value) and echo not in str(info.value)
    assert "rejected *** / ***" in str(info.value)
