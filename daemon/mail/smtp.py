"""The SMTP transport: any mail server, with STARTTLS or TLS, and the password from the environment."""

from __future__ import annotations

import logging
import smtplib
import ssl
from collections.abc import Sequence
from email.message import EmailMessage

from daemon.errors import PermanentDeliveryError, TransientDeliveryError, UnknownDeliveryError
from daemon.mail import Transport

log = logging.getLogger(__name__)


class _Tracking:
    """Notes when the end of a message's DATA has gone out: past that point, a lost answer leaves the
    outcome unknown (the server may have accepted it), and a retry could deliver it twice."""

    body_sent = False

    def send(self, s: bytes | str) -> None:
        super().send(s)  # type: ignore[misc]  # the SMTP class this is mixed into
        if isinstance(s, bytes) and s.endswith(b"\r\n.\r\n"):
            self.body_sent = True


class _SMTP(_Tracking, smtplib.SMTP):  # type: ignore[misc]
    pass


class _SMTP_SSL(_Tracking, smtplib.SMTP_SSL):  # type: ignore[misc]
    pass


def _answer(code: int, text: bytes | str) -> str:
    message = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return f"{code} {' '.join(message.split())}"


class SmtpTransport(Transport):
    name = "smtp"

    def __init__(
        self,
        host: str,
        port: int,
        *,
        starttls: bool = True,
        use_ssl: bool = False,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        local_hostname: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.starttls = starttls
        self.use_ssl = use_ssl
        self.username = username
        self._password = password
        self.timeout = timeout
        self.local_hostname = local_hostname
        self._connection: _SMTP | _SMTP_SSL | None = None

    def _connect(self) -> _SMTP | _SMTP_SSL:
        if self._connection is not None:
            return self._connection
        where = f"{self.host}:{self.port}"
        try:
            if self.use_ssl:
                smtp: _SMTP | _SMTP_SSL = _SMTP_SSL(
                    self.host,
                    self.port,
                    timeout=self.timeout,
                    local_hostname=self.local_hostname,
                    context=ssl.create_default_context(),
                )
            else:
                smtp = _SMTP(self.host, self.port, timeout=self.timeout, local_hostname=self.local_hostname)
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
            if self.username:
                smtp.login(self.username, self._password or "")
        except smtplib.SMTPAuthenticationError as exc:
            # A configuration problem: keep the sends and retry once someone fixes the credentials.
            raise TransientDeliveryError(
                f"SMTP server {where} refused the login for {self.username!r}: "
                f"{_answer(exc.smtp_code, exc.smtp_error)}"
            ) from None
        except smtplib.SMTPNotSupportedError:
            raise TransientDeliveryError(
                f"SMTP server {where} does not offer STARTTLS "
                "(set [mail.smtp] starttls = false only on a trusted network)"
            ) from None
        except smtplib.SMTPResponseException as exc:
            raise TransientDeliveryError(
                f"SMTP server {where}: {_answer(exc.smtp_code, exc.smtp_error)}"
            ) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise TransientDeliveryError(f"cannot connect to SMTP server {where}: {exc}") from None
        self._connection = smtp
        return smtp

    def deliver(self, message: EmailMessage, envelope_from: str, recipients: Sequence[str]) -> dict[str, str]:
        smtp = self._connect()
        smtp.body_sent = False
        try:
            refused = smtp.send_message(message, from_addr=envelope_from, to_addrs=list(recipients))
        except smtplib.SMTPRecipientsRefused as exc:
            self.close()
            answers = {r: _answer(c, m) for r, (c, m) in exc.recipients.items()}
            summary = "; ".join(f"{r}: {a}" for r, a in answers.items())
            if any(400 <= c < 500 for c, _ in exc.recipients.values()):
                raise TransientDeliveryError(f"recipients refused for now: {summary}") from None
            raise PermanentDeliveryError(f"every recipient refused: {summary}") from None
        except smtplib.SMTPResponseException as exc:
            self.close()
            answer = _answer(exc.smtp_code, exc.smtp_error)
            if 400 <= exc.smtp_code < 500:
                raise TransientDeliveryError(f"server answered {answer}") from None
            raise PermanentDeliveryError(f"server answered {answer}") from None
        except (OSError, smtplib.SMTPException) as exc:
            self.close()
            if smtp.body_sent:
                raise UnknownDeliveryError(
                    f"the connection to {self.host}:{self.port} broke after the whole message was sent, "
                    f"before the server answered ({exc or type(exc).__name__})"
                ) from None
            raise TransientDeliveryError(f"connection to {self.host}:{self.port} failed: {exc}") from None
        # smtplib reports a partial refusal only here, in its return value.
        return {r: _answer(c, m) for r, (c, m) in refused.items()}

    def close(self) -> None:
        if self._connection is None:
            return
        try:
            self._connection.quit()
        except (OSError, smtplib.SMTPException):
            self._connection.close()
        self._connection = None
