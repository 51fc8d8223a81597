"""The SMTP transport: any mail server, with STARTTLS or TLS, and the password from the environment.

One connection serves every send of a pass, with one login; answers about our own connection, login
or account raise `AccountDeliveryError`, naming the setting to fix, so the dispatcher stops there.
"""

from __future__ import annotations

import logging
import re
import smtplib
import ssl
from collections.abc import Callable, Sequence
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING

from daemon.errors import (
    AccountDeliveryError,
    DeliveryError,
    HeldDeliveryError,
    PermanentDeliveryError,
    TransientDeliveryError,
    UnknownDeliveryError,
)
from daemon.mail import Readiness, Transport

if TYPE_CHECKING:
    from daemon.backends import Wiring

log = logging.getLogger(__name__)

# One mechanism per login, never a second: smtplib's login() tries the next one after a 535, which
# doubles the failed logins a wrong password costs (and brings account lockouts closer). Over TLS,
# PLAIN first: servers that keep only password hashes refuse CRAM-MD5 while offering it. In the
# clear, CRAM-MD5 first: it does not send the password itself.
MECHANISMS_TLS = ("PLAIN", "LOGIN", "CRAM-MD5")
MECHANISMS_CLEAR = ("CRAM-MD5", "PLAIN", "LOGIN")
ACCOUNT_CODES = frozenset({530, 534, 535, 538})  # authentication required / refused / needs TLS
PASSWORD_FIX = (
    "check [mail.smtp] username and FOLLOWTHROUGH_SMTP_PASSWORD (or FOLLOWTHROUGH_SMTP_PASSWORD_FILE)"
)
_DOT_AT_LINE_START = re.compile(rb"(?m)^\.")  # doubled in DATA (RFC 5321 4.5.2), as smtplib does
_ENHANCED = re.compile(r"^\s*([245]\.\d{1,3}\.\d{1,3})\b")


class _Tracking:
    """Notes when the end of a message's DATA has gone out: past that point, a lost answer leaves the
    outcome unknown (the server may have accepted it), and a retry could deliver it twice. With
    `answer_later`, DATA returns once the message is out, and the server's answer is read later; with
    `pipelining`, MAIL, RCPT and DATA go in one write when the server offers it (RFC 2920)."""

    body_sent = False
    answer_later = False
    pipelining = False

    def send(self, s: bytes | str) -> None:
        super().send(s)  # type: ignore[misc]  # the SMTP class this is mixed into
        if isinstance(s, bytes) and s.endswith(b"\r\n.\r\n"):
            self.body_sent = True

    def sendmail(
        self,
        from_addr: str,
        to_addrs: str | Sequence[str],
        msg: bytes | str,
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
    ) -> dict[str, tuple[int, bytes]]:
        smtp: smtplib.SMTP = self  # type: ignore[assignment]
        smtp.ehlo_or_helo_if_needed()
        plain = not any(o.lower() == "smtputf8" for o in mail_options)
        pipelined = self.pipelining and self.answer_later and smtp.has_extn("pipelining")
        if not (pipelined and plain and isinstance(msg, bytes)):
            return super().sendmail(from_addr, to_addrs, msg, mail_options, rcpt_options)  # type: ignore[misc]
        recipients = [to_addrs] if isinstance(to_addrs, str) else list(to_addrs)
        return self._pipelined(smtp, from_addr, recipients, msg, mail_options, rcpt_options)

    def _pipelined(
        self,
        smtp: smtplib.SMTP,
        sender: str,
        recipients: list[str],
        msg: bytes,
        mail_options: Sequence[str],
        rcpt_options: Sequence[str],
    ) -> dict[str, tuple[int, bytes]]:
        """smtplib's sendmail with its commands in one write, their answers read in order after; the
        answer to the message itself is left to read (`answer_later`)."""
        size = [f"size={len(msg)}"] if smtp.has_extn("size") else []
        mail_tail = "".join(f" {o}" for o in (*size, *mail_options))
        rcpt_tail = "".join(f" {o}" for o in rcpt_options)
        commands = [f"mail FROM:{smtplib.quoteaddr(sender)}{mail_tail}"]
        commands += [f"rcpt TO:{smtplib.quoteaddr(r)}{rcpt_tail}" for r in recipients]
        commands.append("data")
        if any("\r" in c or "\n" in c for c in commands):  # as smtplib's putcmd refuses them
            raise ValueError("command and arguments contain prohibited newline characters")
        self.send("".join(f"{c}\r\n" for c in commands))
        # The answers come in the order of the commands; a 421 closes the connection, so none follow it.
        code, text = smtp.getreply()
        if code == 421:
            smtp.close()
        if code != 250:
            self._after_refusal(smtp, len(recipients) + 1, code)
            raise smtplib.SMTPSenderRefused(code, text, sender)
        refused: dict[str, tuple[int, bytes]] = {}
        for recipient in recipients:
            code, text = smtp.getreply()
            if code not in (250, 251):
                refused[recipient] = (code, text)
            if code == 421:
                smtp.close()
                raise smtplib.SMTPRecipientsRefused(refused)
        code, text = smtp.getreply()
        if code == 421:
            smtp.close()
        if len(refused) == len(recipients):
            self._after_refusal(smtp, 0, code)
            raise smtplib.SMTPRecipientsRefused(refused)
        if code != 354:
            self._after_refusal(smtp, 0, code)
            raise smtplib.SMTPDataError(code, text)
        self._body(msg)
        return refused

    def _after_refusal(self, smtp: smtplib.SMTP, unread: int, last: int) -> None:
        """After a refusal: read the `unread` answers still due (`last`, the code of the last one read),
        end a DATA the server took with nothing to deliver, then reset the transaction as smtplib does.
        Nothing when the server has closed the connection."""
        if smtp.sock is None:
            return
        try:
            for _ in range(unread):
                last = smtp.getreply()[0]
            if last == 354:
                self.send(".\r\n")
                smtp.getreply()
        except (OSError, smtplib.SMTPException):  # the refusal is what matters: a fresh connection next
            smtp.close()
            return
        _reset(smtp)

    def data(self, msg: bytes | str) -> tuple[int, bytes]:
        if not self.answer_later or not isinstance(msg, bytes):
            return super().data(msg)  # type: ignore[misc]
        # smtplib's own DATA, but for the wait for its last answer (`SmtpTransport.start`).
        self.putcmd("data")  # type: ignore[attr-defined]
        code, reply = self.getreply()  # type: ignore[attr-defined]
        if code != 354:
            # Unlike smtplib's, with the transaction ended: the next MAIL would meet "503 nested MAIL".
            _reset(self)  # type: ignore[arg-type]
            raise smtplib.SMTPDataError(code, reply)
        self._body(msg)
        return 250, b"answer pending"

    def _body(self, msg: bytes) -> None:
        quoted = _DOT_AT_LINE_START.sub(b"..", msg)
        if not quoted.endswith(b"\r\n"):
            quoted += b"\r\n"
        self.send(quoted + b".\r\n")


def _reset(smtp: smtplib.SMTP) -> None:
    """End a refused transaction (RSET), or the connection when that fails (or after a 421)."""
    if smtp.sock is None:
        return
    try:
        smtp.rset()
    except (OSError, smtplib.SMTPException):
        smtp.close()


class _SMTP(_Tracking, smtplib.SMTP):  # type: ignore[misc]
    pass


class _SMTP_SSL(_Tracking, smtplib.SMTP_SSL):  # type: ignore[misc]
    pass


def _text(text: bytes | str) -> str:
    return text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)


def _answer(code: int, text: bytes | str) -> str:
    return f"{code} {' '.join(_text(text).split())}"


def _enhanced(text: bytes | str) -> str:
    """The RFC 3463 status code at the start of an answer's text ("5.7.1"), or ""."""
    match = _ENHANCED.match(_text(text))
    return match.group(1) if match else ""


def _offers(smtp: smtplib.SMTP) -> str:
    features = [name.upper() for name in smtp.esmtp_features]
    return f" (its EHLO offers: {', '.join(features)})" if features else " (it did not answer EHLO)"


def _encrypted(smtp: smtplib.SMTP) -> bool:
    return isinstance(smtp.sock, ssl.SSLSocket)


class SmtpTransport(Transport):
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
        ca_file: Path | str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.starttls = starttls
        self.use_ssl = use_ssl
        self.username = username
        self._password = password
        self.timeout = timeout
        self.local_hostname = local_hostname
        self.ca_file = Path(ca_file) if ca_file is not None else None
        self._connection: _SMTP | _SMTP_SSL | None = None
        self.connections = 0  # opened since this transport was made: one a pass, when all is well

    @classmethod
    def from_config(cls, wiring: Wiring) -> SmtpTransport:
        settings = wiring.settings
        smtp = settings.mail.smtp
        return cls(
            smtp.host,
            smtp.port,
            starttls=smtp.starttls,
            use_ssl=smtp.ssl,
            username=smtp.username,
            password=settings.smtp_password(),
            timeout=smtp.timeout,
            ca_file=settings.resolve(smtp.ca_file) if smtp.ca_file else None,
        )

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def _tls(self) -> ssl.SSLContext:
        """The TLS settings for STARTTLS and implicit TLS alike: the system's CAs, and ca_file's."""
        context = ssl.create_default_context()
        if self.ca_file is not None:
            try:
                context.load_verify_locations(cafile=str(self.ca_file))
            except (OSError, ssl.SSLError) as exc:
                raise AccountDeliveryError(
                    f"[mail.smtp] ca_file {self.ca_file}: cannot be read as PEM certificates ({exc})"
                ) from None
        return context

    def _connect(self) -> _SMTP | _SMTP_SSL:
        if self._connection is not None and self._connection.sock is not None:
            return self._connection
        self._connection = None
        smtp: _SMTP | _SMTP_SSL | None = None
        try:
            if self.use_ssl:
                smtp = _SMTP_SSL(
                    self.host,
                    self.port,
                    timeout=self.timeout,
                    local_hostname=self.local_hostname,
                    context=self._tls(),
                )
            else:
                smtp = _SMTP(self.host, self.port, timeout=self.timeout, local_hostname=self.local_hostname)
                if self.starttls:
                    smtp.ehlo()
                    if not smtp.has_extn("starttls"):
                        raise AccountDeliveryError(
                            f"SMTP server {self.where} does not offer STARTTLS{_offers(smtp)}: set "
                            "[mail.smtp] ssl = true if it speaks TLS from the start (usually port 465), "
                            "or starttls = false, only on a trusted network"
                        )
                    smtp.starttls(context=self._tls())
            self.connections += 1
            if self.username:
                self._login(smtp)
        except BaseException as exc:
            if smtp is not None:
                smtp.close()
            raise self._connect_error(exc) from None
        self._connection = smtp
        return smtp

    def _connect_error(self, exc: BaseException) -> BaseException:
        where = self.where
        if isinstance(exc, HeldDeliveryError | TransientDeliveryError):
            return exc
        if isinstance(exc, ssl.SSLCertVerificationError):
            return AccountDeliveryError(
                f"SMTP server {where}: its certificate is not trusted ({exc.verify_message}); "
                "if a private CA signed it, set [mail.smtp] ca_file to that CA's PEM file"
            )
        if isinstance(exc, ssl.SSLError):
            return AccountDeliveryError(
                f"SMTP server {where}: TLS could not be set up ({exc.reason or exc}); check [mail.smtp] "
                "port, ssl and starttls (port 465 usually speaks TLS from the start: ssl = true; "
                "587 and 25 use starttls = true)"
            )
        if isinstance(exc, smtplib.SMTPResponseException):
            answer = _answer(exc.smtp_code, exc.smtp_error)
            if 400 <= exc.smtp_code < 500:
                return TransientDeliveryError(f"SMTP server {where}: {answer}")
            return AccountDeliveryError(f"SMTP server {where} refused the connection: {answer}")
        if isinstance(exc, OSError | smtplib.SMTPException):
            return TransientDeliveryError(f"cannot connect to SMTP server {where}: {exc}")
        return exc

    def _login(self, smtp: smtplib.SMTP) -> None:
        """One AUTH with one mechanism: a refusal is final for this pass, never a second try."""
        where = self.where
        smtp.ehlo_or_helo_if_needed()
        offered = smtp.esmtp_features.get("auth", "").upper().split()
        if not offered:
            if not _encrypted(smtp) and smtp.has_extn("starttls"):
                raise AccountDeliveryError(
                    f"SMTP server {where} offers AUTH only over TLS: it offers STARTTLS, which is off; "
                    "set [mail.smtp] starttls = true"
                )
            raise AccountDeliveryError(
                f"SMTP server {where} does not offer AUTH{' even over TLS' if _encrypted(smtp) else ''}"
                f"{_offers(smtp)}: remove [mail.smtp] username if it takes mail without a login, "
                "or turn on SMTP AUTH on the server"
            )
        mechanisms = MECHANISMS_TLS if _encrypted(smtp) else MECHANISMS_CLEAR
        mechanism = next((m for m in mechanisms if m in offered), None)
        if mechanism is None:
            raise AccountDeliveryError(
                f"SMTP server {where} offers AUTH only as {' '.join(offered)}; followthrough speaks "
                f"{', '.join(mechanisms)}"
            )
        smtp.user, smtp.password = self.username or "", self._password or ""
        method = getattr(smtp, "auth_" + mechanism.lower().replace("-", "_"))
        try:
            smtp.auth(mechanism, method, initial_response_ok=True)
        except smtplib.SMTPAuthenticationError as exc:
            answer = _answer(exc.smtp_code, exc.smtp_error)
            if 400 <= exc.smtp_code < 500:
                raise TransientDeliveryError(f"SMTP server {where}: login failed for now: {answer}") from None
            if exc.smtp_code == 538:
                fix = "it wants TLS first: set [mail.smtp] starttls = true (or ssl = true)"
            elif exc.smtp_code == 534:
                fix = "the account refuses this way of logging in (an app password may be needed)"
            else:
                fix = PASSWORD_FIX
            raise AccountDeliveryError(
                f"SMTP server {where} refused the login for {self.username!r} ({answer}): {fix}"
            ) from None
        log.debug("logged in to %s as %s with AUTH %s", where, self.username, mechanism)

    def _account_fix(self, code: int, text: bytes | str, sender: str) -> str:
        """What to change after a refusal of our account or sender, from the answer's wording."""
        words = _text(text).lower()
        if "tls" in words or "encrypt" in words:
            return "set [mail.smtp] starttls = true (or ssl = true)"
        if not self.username:
            return (
                "if the server takes mail only after a login, "
                "set [mail.smtp] username and FOLLOWTHROUGH_SMTP_PASSWORD"
            )
        if code in ACCOUNT_CODES:
            return PASSWORD_FIX
        return f"check that the account {self.username!r} may send as {sender}"

    def check(self, senders: Sequence[str]) -> list[Readiness]:
        """Connect, STARTTLS, log in as a pass does, offer each sender in a MAIL FROM taken back by RSET,
        then QUIT: the server's answers about our own settings, and nothing sent."""
        subject = f"smtp {self.where}"
        self.close()  # a fresh connection and login, as the next pass makes
        try:
            smtp = self._connect()
        except DeliveryError as exc:
            fix = ""
            if str(exc).startswith("cannot connect"):
                fix = "; check [mail.smtp] host and port, and that this machine can reach the server"
            return [Readiness(subject, problem=f"{exc}{fix}")]
        encrypted = _encrypted(smtp)
        found = ["connected", "TLS" if self.use_ssl else "STARTTLS" if encrypted else "no TLS"]
        if self.username:
            found.append(f"logged in as {self.username!r}")
        refused: list[str] = []
        try:
            smtp.ehlo_or_helo_if_needed()
            for sender in dict.fromkeys(senders):
                code, text = smtp.mail(sender)
                if not 200 <= code < 300:
                    refused.append(str(self._refusal(smtplib.SMTPSenderRefused(code, text, sender), sender)))
                smtp.rset()
        except (OSError, smtplib.SMTPException) as exc:
            return [Readiness(subject, problem=f"connection to {self.where} failed: {exc}")]
        finally:
            self.close()  # QUIT
        if refused:
            return [Readiness(subject, problem="; ".join(refused))]
        if senders:
            found.append(f"MAIL FROM taken for {', '.join(dict.fromkeys(senders))} (then RSET)")
        found.append("QUIT; nothing sent")
        return [Readiness(subject, found=", ".join(found))]

    def deliver(self, message: EmailMessage, envelope_from: str, recipients: Sequence[str]) -> dict[str, str]:
        return self.start(message, envelope_from, recipients)()

    def start(
        self, message: EmailMessage, envelope_from: str, recipients: Sequence[str]
    ) -> Callable[[], dict[str, str]]:
        """Send the message, up to its last line; `finish` reads the server's answer to it."""
        smtp, refused = self._hand(message, envelope_from, recipients)

        def finish() -> dict[str, str]:
            self._answer(smtp, envelope_from)
            # smtplib reports a partial refusal only here, in its return value.
            return {r: _answer(c, m) for r, (c, m) in refused.items()}

        return finish

    def _hand(
        self, message: EmailMessage, envelope_from: str, recipients: Sequence[str]
    ) -> tuple[_SMTP | _SMTP_SSL, dict[str, tuple[int, bytes]]]:
        for tries_left in (1, 0):
            reused = self._connection is not None and self._connection.sock is not None
            smtp = self._connect()
            smtp.body_sent, smtp.answer_later, smtp.pipelining = False, True, True
            try:
                return smtp, smtp.send_message(message, from_addr=envelope_from, to_addrs=list(recipients))
            except smtplib.SMTPServerDisconnected as exc:
                self._drop()
                if reused and tries_left and not smtp.body_sent:
                    # Servers close idle connections; none of this message had gone out, so one
                    # fresh connection is safe.
                    log.debug("SMTP connection to %s was closed (%s); connecting again", self.where, exc)
                    continue
                raise self._broken(smtp, exc) from None
            except smtplib.SMTPResponseException as exc:
                self._drop()  # only if smtplib closed it (421): otherwise it reset the transaction
                raise self._refusal(exc, envelope_from) from None
            except smtplib.SMTPRecipientsRefused as exc:
                self._drop()
                raise self._refused_all(exc, envelope_from) from None
            except (OSError, smtplib.SMTPException) as exc:
                self.close()
                raise self._broken(smtp, exc) from None
            finally:
                smtp.answer_later = False
        raise AssertionError("unreachable")  # pragma: no cover

    def _answer(self, smtp: _SMTP | _SMTP_SSL, envelope_from: str) -> None:
        """The server's answer to the end of a message's DATA, as smtplib's sendmail takes it."""
        try:
            code, text = smtp.getreply()
        except (OSError, smtplib.SMTPException) as exc:  # smtplib closes the connection first
            self.close()
            raise self._broken(smtp, exc) from None
        if code == 250:
            return
        if code == 421:
            smtp.close()
        _reset(smtp)
        self._drop()
        raise self._refusal(smtplib.SMTPDataError(code, text), envelope_from) from None

    def _broken(self, smtp: _SMTP | _SMTP_SSL, exc: BaseException) -> Exception:
        if smtp.body_sent:
            return UnknownDeliveryError(
                f"the connection to {self.where} broke after the whole message was sent, "
                f"before the server answered ({exc or type(exc).__name__})"
            )
        return TransientDeliveryError(f"connection to {self.where} failed: {exc}")

    def _refusal(self, exc: smtplib.SMTPResponseException, sender: str) -> Exception:
        answer = _answer(exc.smtp_code, exc.smtp_error)
        code = exc.smtp_code
        if 400 <= code < 500:
            return TransientDeliveryError(f"server answered {answer}")
        if isinstance(exc, smtplib.SMTPSenderRefused) and not (
            code == 552 or _enhanced(exc.smtp_error).startswith("5.3.")  # the message's size
        ):
            # Refused before any recipient was named: about our account or sender, not the mail.
            fix = self._account_fix(code, exc.smtp_error, sender)
            if code in ACCOUNT_CODES:
                return AccountDeliveryError(f"SMTP server {self.where} answered {answer}: {fix}")
            return AccountDeliveryError(
                f"SMTP server {self.where} refused the sender {sender}: {answer}: {fix}", sender=sender
            )
        return PermanentDeliveryError(f"server answered {answer}")

    def _refused_all(self, exc: smtplib.SMTPRecipientsRefused, sender: str) -> Exception:
        answers = {r: _answer(c, m) for r, (c, m) in exc.recipients.items()}
        summary = "; ".join(f"{r}: {a}" for r, a in answers.items())
        if any(400 <= c < 500 for c, _ in exc.recipients.values()):
            return TransientDeliveryError(f"recipients refused for now: {summary}")
        if all(c in ACCOUNT_CODES or _enhanced(m).startswith("5.7.") for c, m in exc.recipients.values()):
            # 5.7.x is the server's policy ("Relay access denied"), not an unknown mailbox: it is
            # about what our account may do, so the send waits for a person instead of failing.
            code, text = next(iter(exc.recipients.values()))
            return HeldDeliveryError(
                f"the mail server's policy refused every recipient: {summary}; "
                f"{self._account_fix(code, text, sender)}"
            )
        return PermanentDeliveryError(f"every recipient refused: {summary}")

    def _drop(self) -> None:
        """Forget the connection if smtplib closed it (after a 421 or a dropped line)."""
        if self._connection is not None and self._connection.sock is None:
            self._connection = None

    def close(self) -> None:
        if self._connection is None:
            return
        try:
            self._connection.quit()
        except (OSError, smtplib.SMTPException):
            self._connection.close()
        self._connection = None
