"""SQL tables for letters: what was written, from which template, and how each copy went.

A letter is stored once, with the exact HTML sent, its SHA-256, the template and the
version of the template's sources, the language and every value it was rendered from, so
that the text a parent received can be shown (and rendered again) years later, for
example to a court. Each copy of it (an email to a parent, a postal copy to a household,
a document for the local authority) is a row of the outbox.
"""

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


class Channel(StrEnum):
    EMAIL = "email"
    POST = "post"
    LA = "la"  # a document for the local authority, not for parents
    TEXT = "text"  # a text message to one parent


class OutboxStatus(StrEnum):
    PENDING = "pending"  # not yet tried
    SENDING = "sending"  # an attempt holds the row until lease_until
    SENT = "sent"  # accepted by the SMTP server
    FAILED = "failed"  # gave up (see last_error); a postal copy replaces it if possible
    QUEUED_FOR_POST = "queued_for_post"  # waits for the day's print pack
    PRINTED = "printed"  # in the print pack of print_day
    READY_FOR_LA = "ready_for_la"  # no LA address configured: staff submit it themselves
    NO_ADDRESS = "no_address"  # neither an email nor a postal address (nor, for a text
    # message, a telephone number): staff must act
    READY_TO_TEXT = "ready_to_text"  # a text message for staff to send (a task says so)


class Letter(SQLModel, table=True):
    """One letter, as rendered. `html` holds the letter with two placeholders (the
    recipient's address block and the salutation) that each copy fills in; for a text
    message, the text itself."""

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True, max_length=200)  # the caller's idempotency key
    school_id: int = Field(foreign_key="school.id", index=True)
    pupil_id: int = Field(foreign_key="pupil.id", index=True)
    case_id: str | None = Field(default=None, index=True)
    template: str  # e.g. all_saints/stage_1a
    template_version: str = Field(foreign_key="lettertemplateversion.version")
    language: str = "en"
    audience: str  # parents | la
    subject: str
    as_of: date  # the figures in the letter are as of the end of this day
    written_on: date  # the date printed on the letter
    data: str = Field(sa_column=Column(Text, nullable=False))  # JSON: the whole context
    html: str = Field(sa_column=Column(Text, nullable=False))
    content_sha256: str = Field(max_length=64, index=True)
    created_at: datetime


class LetterTemplateVersion(SQLModel, table=True):
    """The sources of a template (the letter, the layout and the parts it includes) as
    they were when a letter was written, keyed by their hash."""

    version: str = Field(primary_key=True, max_length=64)
    template: str
    language: str
    sources: str = Field(sa_column=Column(Text, nullable=False))  # JSON: {file name: source}
    created_at: datetime


class Outbox(SQLModel, table=True):
    """One copy of a letter on its way to one recipient by one channel.

    `recipient_key` names the recipient (the contact, the household or the LA) so that a
    letter never has two rows for the same recipient and channel. `message_id` is derived
    from the letter and this row, so a retried send carries the same Message-ID.
    """

    __table_args__ = (
        UniqueConstraint("letter_id", "channel", "recipient_key"),
        Index("ix_outbox_print", "school_id", "channel", "status", "print_day"),
    )
    id: int | None = Field(default=None, primary_key=True)
    letter_id: int = Field(foreign_key="letter.id", index=True)
    school_id: int = Field(foreign_key="school.id")
    contact_id: int | None = Field(default=None, foreign_key="contact.id")
    channel: str  # Channel
    recipient_key: str = Field(max_length=200)
    recipient_name: str  # as addressed: "Mrs Jane Smith and Mr John Smith"
    salutation: str  # "Mrs Smith and Mr Smith"
    email: str = ""
    address: str = ""  # postal address lines, separated by newlines
    postcode: str = ""
    message_id: str | None = Field(default=None, unique=True, max_length=250)
    copy_sha256: str = Field(default="", max_length=64)  # of this recipient's copy
    status: str  # OutboxStatus
    attempts: int = 0
    last_error: str = ""  # the error's kind and SMTP code only, never an address
    lease_until: datetime | None = None
    fallback_for: int | None = Field(default=None, foreign_key="outbox.id")
    created_at: datetime
    sent_at: datetime | None = None
    print_day: date | None = None  # the print pack it went into
