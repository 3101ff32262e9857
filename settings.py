"""Settings from the environment (prefix ATTEND_, and the two well-known names)."""

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field
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


@lru_cache
def get_settings() -> Settings:
    return Settings()
