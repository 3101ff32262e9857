"""Staff accounts, the schools each may see, and signed-in sessions.

Passwords are hashed with argon2 (argon2-cffi). A session is a random token in an
HttpOnly cookie; only its SHA-256 is stored, so a copy of the database does not let
anyone sign in, and signing out deletes the row (a cookie cannot outlive it). Each
session carries its own CSRF token.
"""

import contextlib
import hashlib
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete
from sqlmodel import Field, Session, SQLModel, select

from models.tables import School


class StaffRole(StrEnum):
    """Who signs in, in the schools' words."""

    OFFICE = "office"
    ATTENDANCE_OFFICER = "attendance_officer"
    HEADTEACHER = "headteacher"  # the headteacher or Senior Attendance Champion
    GOVERNOR = "governor"  # read-only, and sees no pupil's name
    LA_OFFICER = "la_officer"  # a local authority officer, across several schools


ROLE_NAMES: dict[str, str] = {
    StaffRole.OFFICE: "Office staff",
    StaffRole.ATTENDANCE_OFFICER: "Attendance officer",
    StaffRole.HEADTEACHER: "Headteacher (Senior Attendance Champion)",
    StaffRole.GOVERNOR: "Governor",
    StaffRole.LA_OFFICER: "Local authority officer",
}

MIN_PASSWORD_LENGTH = 10
LOCK_AFTER_FAILURES = 5
LOCK_FOR = timedelta(minutes=5)


class WebUser(SQLModel, table=True):
    """A member of staff (or governor, or LA officer) who signs in to the web app."""

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(unique=True, max_length=254)  # stored lower-case
    name: str  # as it appears in the chronology ("J Smith")
    role: str  # StaffRole
    password_hash: str
    active: bool = True
    created_at: datetime
    failed_logins: int = 0
    locked_until: datetime | None = None


class WebUserSchool(SQLModel, table=True):
    """A school a user may see. Every query of the web app is scoped to these."""

    user_id: int = Field(foreign_key="webuser.id", primary_key=True)
    school_id: int = Field(foreign_key="school.id", primary_key=True)


class WebSession(SQLModel, table=True):
    """A signed-in browser. The cookie holds the token; this row holds its hash."""

    token_hash: str = Field(primary_key=True, max_length=64)
    user_id: int = Field(foreign_key="webuser.id", index=True)
    csrf_token: str = Field(max_length=64)
    created_at: datetime
    last_seen: datetime
    expires_at: datetime
    flash: str = ""  # a message for the next page ("Call recorded")


class AccountError(ValueError):
    """An account that cannot be created as asked; the message says why."""


@lru_cache(maxsize=1)
def _hasher() -> PasswordHasher:
    return PasswordHasher()


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    """Verified against when the e-mail is unknown, so that a wrong address takes as long
    as a wrong password and the sign-in page does not tell which addresses exist."""
    return _hasher().hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _utc(value: datetime | None) -> datetime | None:
    """SQLite hands datetimes back without their zone; they are stored in UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"a password has at least {MIN_PASSWORD_LENGTH} characters")


def add_user(
    session: Session,
    *,
    email: str,
    name: str,
    role: str,
    school_ids: Sequence[int],
    password: str,
    now: datetime | None = None,
) -> WebUser:
    """A new account with the schools it may see. Raises AccountError, writing nothing."""
    email = email.strip().lower()
    if not _EMAIL.match(email):
        raise AccountError(f"{email!r} is not an e-mail address")
    if role not in ROLE_NAMES:
        raise AccountError(f"no role {role!r}; roles: {', '.join(ROLE_NAMES)}")
    if not name.strip():
        raise AccountError("a user needs a name (it is written in the chronology)")
    if not school_ids:
        raise AccountError("a user needs at least one school")
    if role != StaffRole.LA_OFFICER and len(set(school_ids)) > 1:
        raise AccountError("only a local authority officer sees more than one school")
    check_password(password)
    if session.exec(select(WebUser.id).where(WebUser.email == email)).first() is not None:
        raise AccountError(f"there is already a user {email}")
    known = set(session.exec(select(School.id).where(School.id.in_(school_ids))).all())
    if missing := set(school_ids) - known:
        raise AccountError(f"no school with ID {', '.join(map(str, sorted(missing)))}")
    user = WebUser(
        email=email,
        name=name.strip(),
        role=role,
        password_hash=hash_password(password),
        created_at=now or datetime.now(UTC),
    )
    session.add(user)
    session.flush()
    for school_id in dict.fromkeys(school_ids):
        session.add(WebUserSchool(user_id=user.id, school_id=school_id))
    session.flush()
    return user


def authenticate(
    session: Session, email: str, password: str, *, now: datetime | None = None
) -> WebUser | None:
    """The user whose e-mail and password these are, or None. Five wrong passwords in a
    row lock the account for five minutes. Commits the counters it changes."""
    now = now or datetime.now(UTC)
    user = session.exec(select(WebUser).where(WebUser.email == email.strip().lower())).first()
    if user is None or not user.active:
        with contextlib.suppress(VerificationError):
            _hasher().verify(_dummy_hash(), password)
        return None
    locked = _utc(user.locked_until)
    if locked and locked > now:
        return None
    try:
        _hasher().verify(user.password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        user.failed_logins += 1
        if user.failed_logins >= LOCK_AFTER_FAILURES:
            user.locked_until, user.failed_logins = now + LOCK_FOR, 0
        session.add(user)
        session.commit()
        return None
    if _hasher().check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.failed_logins, user.locked_until = 0, None
    session.add(user)
    session.commit()
    return user


def set_password(session: Session, user: WebUser, password: str) -> None:
    check_password(password)
    user.password_hash = hash_password(password)
    session.add(user)
    session.exec(delete(WebSession).where(WebSession.user_id == user.id))


def school_ids_of(session: Session, user_id: int) -> tuple[int, ...]:
    return tuple(
        session.exec(
            select(WebUserSchool.school_id)
            .where(WebUserSchool.user_id == user_id)
            .order_by(WebUserSchool.school_id)
        ).all()
    )


# --------------------------------------------------------------------------- sessions


def start_session(
    session: Session, user: WebUser, *, hours: float, now: datetime | None = None
) -> str:
    """A new signed-in session; returns the token for the cookie."""
    now = now or datetime.now(UTC)
    token = secrets.token_urlsafe(32)
    session.add(
        WebSession(
            token_hash=token_hash(token),
            user_id=user.id,
            csrf_token=secrets.token_urlsafe(32),
            created_at=now,
            last_seen=now,
            expires_at=now + timedelta(hours=hours),
        )
    )
    # Sessions that ran out are of no use to anyone: clear this user's.
    session.exec(
        delete(WebSession).where(WebSession.user_id == user.id, WebSession.expires_at < now)
    )
    session.commit()
    return token


@dataclass(frozen=True)
class SignedIn:
    """The signed-in user as the pages need them."""

    user_id: int
    name: str
    email: str
    role: str
    school_ids: tuple[int, ...]
    token_hash: str
    csrf_token: str
    flash: str

    @property
    def role_name(self) -> str:
        return ROLE_NAMES.get(self.role, self.role)


def load_session(
    session: Session,
    token: str,
    *,
    idle_minutes: float,
    pop_flash: bool = False,
    now: datetime | None = None,
) -> SignedIn | None:
    """The session this cookie token belongs to, if it is still valid. With `pop_flash`
    the message waiting for the next page is taken (a page shows it once)."""
    now = now or datetime.now(UTC)
    hashed = token_hash(token)
    found = session.get(WebSession, hashed)
    if found is None:
        return None
    user = session.get(WebUser, found.user_id)
    expired = _utc(found.expires_at) <= now
    idle = _utc(found.last_seen) + timedelta(minutes=idle_minutes) <= now
    if user is None or not user.active or expired or idle:
        session.delete(found)
        session.commit()
        return None
    flash = found.flash
    touched = now - _utc(found.last_seen) > timedelta(minutes=1)  # not a write per page
    if touched or (pop_flash and flash):
        found.last_seen = now if touched else found.last_seen
        found.flash = "" if pop_flash else found.flash
        session.add(found)
        session.commit()
    return SignedIn(
        user_id=user.id,
        name=user.name,
        email=user.email,
        role=user.role,
        school_ids=school_ids_of(session, user.id),
        token_hash=hashed,
        csrf_token=found.csrf_token,
        flash=flash if pop_flash else "",
    )


def end_session(session: Session, hashed: str) -> None:
    session.exec(delete(WebSession).where(WebSession.token_hash == hashed))
    session.commit()


def set_flash(session: Session, hashed: str, message: str) -> None:
    found = session.get(WebSession, hashed)
    if found is not None:
        found.flash = message
        session.add(found)
        session.commit()


# --------------------------------------------------------------------------- demo accounts

DEMO_DOMAIN = "demo.invalid"  # a reserved domain: these addresses never receive mail
DEMO_ROLES = (
    (StaffRole.OFFICE, "office", "Office"),
    (StaffRole.ATTENDANCE_OFFICER, "officer", "Attendance Officer"),
    (StaffRole.HEADTEACHER, "head", "Headteacher"),
    (StaffRole.GOVERNOR, "governor", "Governor"),
)


@dataclass
class DemoAccount:
    email: str
    name: str
    role: str
    schools: list[str]


def demo_password(path: Path) -> str:
    """The demo accounts' password: made at random once and kept in `path` (readable by
    its owner only) so that `./run` can show it again."""
    if path.is_file():
        return path.read_text(encoding="utf-8").splitlines()[0].strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    password = f"demo-{secrets.token_urlsafe(9)}"
    path.touch(mode=0o600)
    path.write_text(password + "\n", encoding="utf-8")
    return password


def create_demo_users(
    session: Session, *, schools: Iterable[School], password: str
) -> list[DemoAccount]:
    """One demo user per role for each school, and one LA officer seeing them all.
    Users that exist already are left as they are (run it as often as you like)."""
    schools = list(schools)
    accounts: list[DemoAccount] = []

    def ensure(email: str, name: str, role: str, chosen: list[School]) -> None:
        exists = session.exec(select(WebUser.id).where(WebUser.email == email)).first()
        if exists is None:
            add_user(
                session,
                email=email,
                name=name,
                role=role,
                school_ids=[s.id for s in chosen],
                password=password,
            )
        accounts.append(DemoAccount(email, name, role, [s.name for s in chosen]))

    for school in schools:
        slug = school.policy if re.fullmatch(r"[a-z0-9-]+", school.policy) else school.urn
        for role, local, title in DEMO_ROLES:
            ensure(f"{local}@{slug}.{DEMO_DOMAIN}", f"{title} ({school.name})", role, [school])
    if schools:
        ensure(f"la.officer@{DEMO_DOMAIN}", "LA Officer (demo)", StaffRole.LA_OFFICER, schools)
    session.commit()
    return accounts
