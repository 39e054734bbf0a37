"""SMTP delivery of a stored, fully rendered message: the exact bytes go out, so a retry sends
the same mail (same Message-ID) as the first attempt.

Every failure becomes one :class:`DeliveryError` line naming ``host:port`` and the cause, never
the password. ``retryable`` decides whether the caller tries again later:

retryable (the next attempt may well succeed)
    connection refused / reset / unreachable, DNS failure, timeouts, the server hanging up,
    any 4xx reply (greylisting, "try again later", 454 temporary auth failure), and a
    rejection where every refused recipient got a 4xx.
not retryable (the same attempt will fail the same way until a human changes something)
    5xx replies (permanent rejection of the sender, of the data, or of all recipients),
    authentication failures (535: retrying a wrong password only risks a lockout),
    a server that offers no STARTTLS/AUTH although the config asks for it, a TLS
    certificate that does not verify, and a partial delivery (some recipients accepted:
    retrying would mail them twice).
"""

from __future__ import annotations

import base64
import smtplib
import socket
import ssl

from .config import SmtpConfig
from .errors import DeliveryError


def _text(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return " ".join(text.split())[:200]


def _secrets(smtp: SmtpConfig) -> list[str]:
    """The password and the encodings a server might echo it in, longest first."""
    if smtp.password is None:
        return []
    pw = smtp.password.get_secret_value()
    if not pw:
        return []
    user = smtp.username or ""
    forms = {pw}
    for raw in (pw, f"\0{user}\0{pw}", f"{user}\0{pw}"):
        forms.add(base64.b64encode(raw.encode("utf-8")).decode("ascii"))
    return sorted(forms, key=len, reverse=True)


def _error(smtp: SmtpConfig, detail: str, *, retryable: bool) -> DeliveryError:
    message = f"SMTP {smtp.host}:{smtp.port}: {detail}"
    for secret in _secrets(smtp):
        message = message.replace(secret, "***")
    return DeliveryError(message, retryable=retryable)


def send_message(
    smtp: SmtpConfig,
    *,
    sender: str,
    recipients: list[str],
    message: bytes,
    timeout_s: float | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> None:
    """Hand ``message`` (bytes, CRLF line ends) to the SMTP server for ``recipients``.

    ``sender`` is the envelope sender (a bare address). ``timeout_s`` overrides
    ``smtp.timeout`` for every socket operation; ``ssl_context`` replaces the default
    verifying context (tests use it to trust a self-signed certificate).
    Returns once the server accepted the message for every recipient.
    """
    if not recipients:
        raise _error(smtp, "no recipients", retryable=False)
    timeout = smtp.timeout if timeout_s is None else timeout_s
    context = ssl_context or ssl.create_default_context()
    step = "connect"
    try:
        if smtp.tls == "implicit":
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                smtp.host, smtp.port, timeout=timeout, context=context
            )
        else:
            client = smtplib.SMTP(smtp.host, smtp.port, timeout=timeout)
        with client:
            if smtp.tls == "starttls":
                step = "STARTTLS"
                client.starttls(context=context)
            if smtp.username:
                step = "AUTH"
                password = smtp.password.get_secret_value() if smtp.password else ""
                client.login(smtp.username, password)
            step = "send"
            refused = client.sendmail(sender, recipients, message)
    except smtplib.SMTPAuthenticationError as exc:
        temporary = 400 <= exc.smtp_code < 500
        raise _error(
            smtp,
            f"authentication as {smtp.username!r} failed ({exc.smtp_code}"
            + (", temporary)" if temporary else ")"),
            retryable=temporary,
        ) from None
    except smtplib.SMTPNotSupportedError:
        raise _error(smtp, f"the server does not offer {step}", retryable=False) from None
    except smtplib.SMTPRecipientsRefused as exc:
        replies = sorted({(code, _text(text)) for code, text in exc.recipients.values()})
        codes = [code for code, _ in replies]
        first = f": {replies[0][0]} {replies[0][1]}" if replies else ""
        raise _error(
            smtp,
            f"all {len(recipients)} recipient(s) refused{first}",
            retryable=bool(codes) and all(400 <= c < 500 for c in codes),
        ) from None
    except smtplib.SMTPResponseException as exc:  # sender refused, data refused, other replies
        raise _error(
            smtp,
            f"{step} failed: {exc.smtp_code} {_text(exc.smtp_error)}",
            retryable=exc.smtp_code < 500,
        ) from None
    except ssl.SSLCertVerificationError as exc:
        raise _error(
            smtp, f"TLS certificate not trusted: {exc.verify_message or exc}", retryable=False
        ) from None
    except smtplib.SMTPServerDisconnected as exc:
        if "timed out" in str(exc):  # smtplib turns a read timeout into a disconnect
            raise _error(
                smtp, f"timed out during {step} after {timeout:g}s", retryable=True
            ) from None
        raise _error(smtp, f"server disconnected during {step}", retryable=True) from None
    except TimeoutError:
        raise _error(smtp, f"timed out during {step} after {timeout:g}s", retryable=True) from None
    except socket.gaierror as exc:
        raise _error(smtp, f"cannot resolve host: {exc.strerror or exc}", retryable=True) from None
    except ConnectionRefusedError:
        raise _error(smtp, "connection refused", retryable=True) from None
    except (OSError, smtplib.SMTPException) as exc:  # resets, unreachable, TLS handshake, ...
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise _error(smtp, f"{step} failed: {reason}", retryable=True) from None
    if refused:
        bad = ", ".join(f"{addr} ({code})" for addr, (code, _) in sorted(refused.items()))
        raise _error(
            smtp,
            f"accepted for {len(recipients) - len(refused)} of {len(recipients)} recipients; "
            f"refused: {bad}",
            retryable=False,
        )
