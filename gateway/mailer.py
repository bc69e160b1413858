"""How a password-reset link reaches its user: one small interface, three deliveries.

- ``SmtpDelivery``: an e-mail through the SMTP relay of the settings (``smtplib``, in a thread).
- ``LogDelivery`` (dev mode): the link is logged, and nothing else about the user.
- ``NoDelivery``: nothing is sent (outside dev mode with no SMTP relay configured).
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
from email.message import EmailMessage
from typing import Protocol

from gateway.settings import Settings

log = logging.getLogger("irmi.gateway.mailer")


class ResetDelivery(Protocol):
    async def send_reset(self, to: str, link: str, ttl_s: int) -> None: ...


class LogDelivery:
    async def send_reset(self, to: str, link: str, ttl_s: int) -> None:
        # The link only: no e-mail address or name in the logs.
        log.warning("password reset link (dev mode, not e-mailed): %s", link)


class NoDelivery:
    async def send_reset(self, to: str, link: str, ttl_s: int) -> None:
        log.warning("password reset requested but no delivery is configured (smtp_host)")


class SmtpDelivery:
    def __init__(self, settings: Settings) -> None:
        if not settings.smtp_host:
            raise ValueError("SMTP delivery needs IRMI_GATEWAY_SMTP_HOST")
        self.host = settings.smtp_host
        self.port = settings.smtp_port
        self.starttls = settings.smtp_starttls
        self.username = settings.smtp_username
        self.password = settings.smtp_password
        self.sender = settings.smtp_from
        self.timeout = settings.smtp_timeout_s

    def message(self, to: str, link: str, ttl_s: int) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = to
        msg["Subject"] = "Reset your IRMI password"
        minutes = max(1, ttl_s // 60)
        msg.set_content(
            "Someone (hopefully you) asked to reset the password of your IRMI account.\n\n"
            f"Open this link within {minutes} minutes to choose a new password:\n\n{link}\n\n"
            "The link works once. If you did not ask for it, ignore this e-mail: your password "
            "stays as it is.\n"
        )
        return msg

    def _send(self, msg: EmailMessage) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
            if self.starttls:
                smtp.starttls()
            if self.username:
                smtp.login(self.username, self.password or "")
            smtp.send_message(msg)

    async def send_reset(self, to: str, link: str, ttl_s: int) -> None:
        await asyncio.to_thread(self._send, self.message(to, link, ttl_s))


def create_delivery(settings: Settings) -> ResetDelivery:
    mode = settings.reset_delivery
    if mode == "auto":
        mode = "smtp" if settings.smtp_host else ("log" if settings.dev_mode else "none")
    if mode == "smtp":
        return SmtpDelivery(settings)
    if mode == "log":
        return LogDelivery()
    return NoDelivery()
