"""E-mail to guest owners: expiry warnings, ready, retired.

Sending uses the standard ``smtplib`` on the database thread pool's sibling,
a small executor of its own, so a slow SMTP server never stalls the IOLoop or
starves database work. With no ``smtp_host`` configured nothing is sent and
notices are still recorded (so enabling SMTP later does not flood owners with
old warnings).
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.message import EmailMessage

from fogmachine.config import Config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Mail:
    to: str
    subject: str
    body: str


class Mailer:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="fm-mail")

    @property
    def enabled(self) -> bool:
        return bool(self.config.smtp_host)

    def _send_sync(self, mail: Mail) -> None:
        cfg = self.config
        message = EmailMessage()
        message["From"] = cfg.mail_from
        message["To"] = mail.to
        message["Subject"] = mail.subject
        message.set_content(mail.body)
        with smtplib.SMTP(cfg.smtp_host, cfg.smtp_port, timeout=20) as smtp:
            if cfg.smtp_starttls:
                smtp.starttls()
            if cfg.smtp_user:
                smtp.login(cfg.smtp_user, cfg.smtp_password)
            smtp.send_message(message)

    async def send(self, mail: Mail) -> bool:
        """Send one message; False (logged) when it could not be delivered."""
        if not self.enabled or not mail.to:
            return False
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self.executor, self._send_sync, mail)
        except (OSError, smtplib.SMTPException) as exc:
            log.warning("could not send %r to %s: %s", mail.subject, mail.to, exc)
            return False
        log.info("sent %r to %s", mail.subject, mail.to)
        return True

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
