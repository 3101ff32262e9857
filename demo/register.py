"""A demo attendance register: one national code per pupil per school session.

Absence comes in episodes, as it does in a real register: illness spells of a day or
more (more of them towards the end of a half-term), single medical appointments, odd
days and runs of unauthorised absence (Mondays and Fridays above all), term-time
holidays next to the school holidays that siblings take together, late marks, class
trips, and `N` on the last few days where the reason is not yet known. How much of each
a pupil has follows their propensity (demo.pupils).

Each pupil's sessions are built as a list of codes, with a handful of random draws per
episode rather than per session, so tens of millions of marks take seconds.
"""

import math
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from itertools import accumulate, count, repeat

from demo.pupils import DemoPupil, Profile
from imports.marks import MarkRow
from models.calendar import SchoolCalendar
from models.codes import NATIONAL_CODES, Category
from models.tables import RegisterSession

AM, PM = RegisterSession.AM, RegisterSession.PM
PRESENT_AM, PRESENT_PM = "/", "\\"

# How a pupil's absence divides between reasons (shares of their propensity); the
# unauthorised share grows with the propensity, from UNAUTHORISED_SHARE at 8% absence
# to UNAUTHORISED_SHARE + UNAUTHORISED_SLOPE at 48% and above.
MEDICAL_SHARE = 0.08
OTHER_AUTHORISED_SHARE = 0.03  # C, R, and E in secondary years
UNAUTHORISED_SHARE = 0.12
UNAUTHORISED_SLOPE = 0.4
LATE_AFTER_CLOSE_SHARE = 0.12  # of unauthorised absence: U rather than O
LONG_ILLNESS_UNAUTHORISED_SHARE = 0.03
DISENGAGED_FROM = 0.2  # propensity from which unauthorised absence comes in runs

# Episode lengths in school days, with weights.
ILLNESS_DAYS = {1: 45, 2: 25, 3: 13, 4: 8, 5: 6, 8: 3}
LONG_ILLNESS_DAYS = {2: 20, 3: 20, 5: 25, 8: 20, 10: 10, 15: 5}
UNAUTHORISED_RUN_DAYS = {1: 40, 2: 20, 3: 15, 5: 12, 7: 8, 10: 5}
HOLIDAY_DAYS = {2: 20, 3: 25, 4: 15, 5: 30, 7: 5, 10: 5}
WENT_HOME_ILL = 0.15  # illness spells that start in the afternoon
SINGLE_SESSION_UNAUTHORISED = 0.4  # odd unauthorised absences of one session, not a day
HOLIDAY_CHANCE = 0.1  # a holiday family's chance of taking leave at each holiday
LONG_RUN_DAYS = (10, 15)
MISSING_DAYS = (3, 12)
RESOLVE_WITHIN = 5  # school days: an N older than this should have become a proper code
TRUANCY_SESSIONS = (10, 16)
TRUANCY_WEEKS = 10

# Relative weight of each weekday (Monday first) for the start of an episode.
ILLNESS_WEEKDAYS = (1.3, 0.95, 0.9, 0.9, 1.2)
UNAUTHORISED_WEEKDAYS = (1.4, 0.8, 0.7, 0.8, 1.6)
LATE_WEEKDAYS = (1.3, 1.0, 0.9, 0.9, 1.1)
# Illness rises through a half-term: weight ILLNESS_RISE_FROM at its first day, rising
# by ILLNESS_RISE at its last.
ILLNESS_RISE_FROM = 0.7
ILLNESS_RISE = 0.7

TRIP_CHANCE = 0.93  # pupils in on their year group's trip day who go (V)
LATE_MINUTES_MEAN = 7  # L: minutes late, before the register closed
AFTER_CLOSE_MINUTES = (20, 75)  # U
# Chance that an absence on the last days is still `N`, by school days before the last
# day of the register (0 = that day). Past 4 it is overdue: it should have been resolved.
STILL_UNEXPLAINED = (0.7, 0.45, 0.3, 0.2, 0.12, 0.05, 0.04, 0.03)
NEEDS_A_REASON = frozenset("IOG")

MarkTuple = tuple[str, date, RegisterSession, str, int | None]


def _cumulative(weights: dict[int, float]) -> tuple[list[int], list[float], float]:
    """Values, cumulative weights and mean value of an episode-length table."""
    values = list(weights)
    total = sum(weights.values())
    mean = sum(v * w for v, w in weights.items()) / total
    return values, list(accumulate(weights.values())), mean


_ILLNESS = _cumulative(ILLNESS_DAYS)
_LONG_ILLNESS = _cumulative(LONG_ILLNESS_DAYS)
_RUNS = _cumulative(UNAUTHORISED_RUN_DAYS)
_HOLIDAYS = _cumulative(HOLIDAY_DAYS)


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson count (Knuth's method; a normal approximation for large means)."""
    if mean <= 0:
        return 0
    if mean > 30:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit = math.exp(-mean)
    k = 0
    product = rng.random()
    while product > limit:
        k += 1
        product *= rng.random()
    return k


@dataclass
class _Holiday:
    """The school days next to one school holiday, where term-time holidays are taken."""

    key: int  # stable across windows: the ordinal of the first day of the half-term
    before: bool  # True: the end of the half-term, before the holiday
    term_days: list[date]


@dataclass
class _Window:
    """Everything about the register's days that is the same for every pupil."""

    days: list[date]
    session_days: list[date]
    session_halves: list[RegisterSession]
    present: list[str]
    no_minutes: list[None]
    index: list[int]
    illness_weights: list[float]
    unauthorised_weights: list[float]
    late_weights: list[float]
    half_term_last: list[int]  # for each day, the index of the last day of its half-term
    half_term_spans: list[tuple[int, int]]
    by_weekday: list[list[int]]
    day_index: dict[date, int]
    holidays: list[_Holiday]
    trips: dict[tuple[str, int], list[int]] = field(default_factory=dict)

    @classmethod
    def build(cls, calendar: SchoolCalendar, first: date, last: date) -> "_Window":
        days = calendar.school_days(first, last)
        n = len(days)
        day_index = {day: i for i, day in enumerate(days)}
        illness, unauthorised, late = [0.0] * n, [0.0] * n, [0.0] * n
        half_term_last = [0] * n
        spans: list[tuple[int, int]] = []
        holidays: list[_Holiday] = []
        for term in calendar.half_terms:
            term_days = calendar.school_days(term.starts, term.ends)
            inside = [day_index[d] for d in term_days if d in day_index]
            if not inside:
                continue
            spans.append((inside[0], inside[-1]))
            key = term.starts.toordinal()
            holidays += [_Holiday(key, False, term_days), _Holiday(key, True, term_days)]
            for place, day in enumerate(term_days):
                i = day_index.get(day)
                if i is None:
                    continue
                rise = place / max(1, len(term_days) - 1)
                weekday = day.weekday()
                illness[i] = ILLNESS_WEEKDAYS[weekday] * (ILLNESS_RISE_FROM + ILLNESS_RISE * rise)
                unauthorised[i] = UNAUTHORISED_WEEKDAYS[weekday]
                late[i] = LATE_WEEKDAYS[weekday]
                half_term_last[i] = inside[-1]
        by_weekday: list[list[int]] = [[] for _ in range(5)]
        for i, day in enumerate(days):
            by_weekday[day.weekday()].append(i)
        return cls(
            days=days,
            session_days=[day for day in days for _ in (AM, PM)],
            session_halves=[AM, PM] * n,
            present=[PRESENT_AM, PRESENT_PM] * n,
            no_minutes=[None] * (2 * n),
            index=list(range(n)),
            illness_weights=list(accumulate(illness)),
            unauthorised_weights=list(accumulate(unauthorised)),
            late_weights=list(accumulate(late)),
            half_term_last=half_term_last,
            half_term_spans=spans,
            by_weekday=by_weekday,
            day_index=day_index,
            holidays=holidays,
        )

    def trip_days(self, pupil: DemoPupil, rng: random.Random) -> list[int]:
        """One trip day per half-term for each year group of each school."""
        key = (pupil.school_urn, pupil.year_group)
        days = self.trips.get(key)
        if days is None:
            days = [rng.randint(a, b) for a, b in self.half_term_spans if b - a >= 10]
            self.trips[key] = days
        return days


def _spells(
    codes: list[str],
    window: _Window,
    rng: random.Random,
    *,
    code: str,
    sessions: float,
    lengths: tuple[list[int], list[float], float],
    weights: list[float],
    half_day_start: float = 0.0,
) -> None:
    """Write episodes of `code` averaging `sessions` sessions in all, each a run of whole
    school days that stays within its half-term, starting on days drawn by `weights`."""
    values, cumulative, mean_days = lengths
    episodes = _poisson(rng, sessions / (2 * mean_days - half_day_start))
    if not episodes:
        return
    for start in rng.choices(window.index, cum_weights=weights, k=episodes):
        days = rng.choices(values, cum_weights=cumulative)[0]
        end = min(start + days, window.half_term_last[start] + 1)
        first = 2 * start + (1 if half_day_start and rng.random() < half_day_start else 0)
        codes[first : 2 * end] = [code] * (2 * end - first)


def _pupil_register(
    pupil: DemoPupil, window: _Window, rng: random.Random
) -> tuple[list[str], list[int | None]]:
    """The pupil's codes and minutes late, session by session (AM, PM, AM, ...)."""
    n = len(window.days)
    sessions = 2 * n
    codes = window.present[:]
    minutes = window.no_minutes
    share = pupil.propensity
    profile = pupil.profile
    if profile == Profile.LONG_ILLNESS:
        unauthorised = LONG_ILLNESS_UNAUTHORISED_SHARE
        illness_lengths = _LONG_ILLNESS
    else:
        ramp = min(1.0, max(0.0, (share - 0.08) / 0.4))
        unauthorised = UNAUTHORISED_SHARE + UNAUTHORISED_SLOPE * ramp
        illness_lengths = _ILLNESS
    illness = 1.0 - unauthorised - MEDICAL_SHARE - OTHER_AUTHORISED_SHARE
    expected = share * sessions

    _spells(
        codes,
        window,
        rng,
        code="I",
        sessions=expected * illness,
        lengths=illness_lengths,
        weights=window.illness_weights,
        half_day_start=WENT_HOME_ILL,
    )
    for _ in range(_poisson(rng, expected * MEDICAL_SHARE)):
        codes[rng.randrange(sessions)] = "M"
    other = ("C", "R", "E") if pupil.year_group >= 7 else ("C", "R")
    for _ in range(_poisson(rng, expected * OTHER_AUTHORISED_SHARE / 2)):
        day = rng.randrange(n)
        codes[2 * day : 2 * day + 2] = [rng.choice(other)] * 2

    unexplained = expected * unauthorised * (1 - LATE_AFTER_CLOSE_SHARE)
    if share >= DISENGAGED_FROM:
        _spells(
            codes,
            window,
            rng,
            code="O",
            sessions=unexplained,
            lengths=_RUNS,
            weights=window.unauthorised_weights,
        )
    else:
        per_episode = 2 - SINGLE_SESSION_UNAUTHORISED
        for day in rng.choices(
            window.index,
            cum_weights=window.unauthorised_weights,
            k=_poisson(rng, unexplained / per_episode),
        ):
            if rng.random() < SINGLE_SESSION_UNAUTHORISED:
                codes[2 * day + (1 if rng.random() < 0.7 else 0)] = "O"  # mostly afternoons
            else:
                codes[2 * day : 2 * day + 2] = ["O", "O"]
    if profile == Profile.LONG_RUN:
        days = min(n, rng.randint(*LONG_RUN_DAYS))
        start = rng.randrange(n - days + 1) if n else 0
        codes[2 * start : 2 * (start + days)] = ["O"] * (2 * days)
    elif profile == Profile.MISSING:
        # Enquiries found no reason for the earlier days (O); the last few are still N.
        days = min(n, rng.randint(*MISSING_DAYS))
        codes[2 * (n - days) :] = ["O"] * (2 * days)
        unexplained_days = min(days, RESOLVE_WITHIN)
        codes[2 * (n - unexplained_days) :] = ["N"] * (2 * unexplained_days)
    elif profile == Profile.TRUANCY and n:
        span = min(n, TRUANCY_WEEKS * 5)
        offset = rng.randrange(n - span + 1)
        for _ in range(rng.randint(*TRUANCY_SESSIONS)):
            codes[2 * (offset + rng.randrange(span)) + 1] = "O"

    if pupil.family.holiday_seed is not None:
        _holidays(codes, pupil.family.holiday_seed, window)
    for weekday in pupil.part_time_days:
        for day in window.by_weekday[weekday]:
            codes[2 * day + 1] = "C2"

    late_after_close = _poisson(rng, expected * unauthorised * LATE_AFTER_CLOSE_SHARE)
    late = _poisson(rng, pupil.lateness * n)
    if late or late_after_close:
        minutes = minutes[:]
        for day in rng.choices(window.index, cum_weights=window.late_weights, k=late):
            if codes[2 * day] == PRESENT_AM:
                codes[2 * day] = "L"
                minutes[2 * day] = 1 + min(24, int(rng.expovariate(1 / LATE_MINUTES_MEAN)))
        for _ in range(late_after_close):
            day = rng.randrange(n)
            if codes[2 * day] == PRESENT_AM:
                codes[2 * day] = "U"
                minutes[2 * day] = rng.randint(*AFTER_CLOSE_MINUTES)

    for day in window.trip_days(pupil, rng):
        in_school = codes[2 * day] == PRESENT_AM and codes[2 * day + 1] == PRESENT_PM
        if in_school and rng.random() < TRIP_CHANCE:
            codes[2 * day : 2 * day + 2] = ["V", "V"]

    for age, chance in enumerate(STILL_UNEXPLAINED):
        day = n - 1 - age
        if day < 0:
            break
        if codes[2 * day] in NEEDS_A_REASON and rng.random() < chance:
            for s in (2 * day, 2 * day + 1):
                if codes[s] in NEEDS_A_REASON:
                    codes[s] = "N"
    return codes, minutes


def _holidays(codes: list[str], seed: int, window: _Window) -> None:
    """Term-time holidays: decided per family and holiday, so siblings are away together
    and the same family takes the same holiday whatever the register's window."""
    values, cumulative, _ = _HOLIDAYS
    for holiday in window.holidays:
        family = random.Random(seed * 1_000_003 + holiday.key * 2 + holiday.before)
        if family.random() >= HOLIDAY_CHANCE:
            continue
        days = family.choices(values, cum_weights=cumulative)[0]
        away = holiday.term_days[-days:] if holiday.before else holiday.term_days[:days]
        for day in away:
            i = window.day_index.get(day)
            if i is not None:
                codes[2 * i : 2 * i + 2] = ["G", "G"]


def generate_register_tuples(
    pupils: Iterable[DemoPupil],
    calendar: SchoolCalendar,
    first_day: date,
    last_day: date,
    rng: random.Random,
) -> Iterator[MarkTuple]:
    """Every pupil's marks for every school session from `first_day` to `last_day` as
    (upn, day, session, code, minutes_late) tuples: the fast form, for benchmarks."""
    window = _Window.build(calendar, first_day, last_day)
    if not window.days:
        return
    for pupil in pupils:
        codes, minutes = _pupil_register(pupil, window, rng)
        yield from zip(
            repeat(pupil.upn), window.session_days, window.session_halves, codes, minutes
        )


def generate_register(
    pupils: Iterable[DemoPupil],
    calendar: SchoolCalendar,
    first_day: date,
    last_day: date,
    rng: random.Random,
) -> Iterator[MarkRow]:
    """Every pupil's marks for every school session from `first_day` to `last_day`, as
    the rows store_marks takes (numbered from 1). Deterministic for a given `rng` seed."""
    window = _Window.build(calendar, first_day, last_day)
    if not window.days:
        return
    line = 1
    for pupil in pupils:
        codes, minutes = _pupil_register(pupil, window, rng)
        yield from map(
            MarkRow,
            count(line),
            repeat(pupil.upn),
            window.session_days,
            window.session_halves,
            codes,
            minutes,
        )
        line += len(codes)


_ABSENT = frozenset(
    code
    for code, c in NATIONAL_CODES.items()
    if c.category in (Category.AUTHORISED, Category.UNAUTHORISED)
)
_NOT_POSSIBLE = frozenset(code for code, c in NATIONAL_CODES.items() if not c.is_possible_session)


@dataclass
class AbsenceSummary:
    """Figures over a register, worked out in Python from the marks themselves."""

    pupils: int
    marks: int
    possible: int
    absent: int
    persistent: int  # pupils absent 10% or more of their possible sessions
    severe: int  # pupils absent 50% or more
    codes: dict[str, int]
    weekday_possible: list[int]
    weekday_absent: list[int]
    absence_by_pupil: dict[str, float]

    @property
    def absence_rate(self) -> float:
        return self.absent / self.possible if self.possible else 0.0

    @property
    def persistent_share(self) -> float:
        return self.persistent / self.pupils if self.pupils else 0.0

    @property
    def severe_share(self) -> float:
        return self.severe / self.pupils if self.pupils else 0.0

    def weekday_rate(self, weekdays: Sequence[int]) -> float:
        possible = sum(self.weekday_possible[d] for d in weekdays)
        return sum(self.weekday_absent[d] for d in weekdays) / possible if possible else 0.0

    def top_absence_codes(self, n: int = 5) -> list[tuple[str, int]]:
        absences = [(code, k) for code, k in self.codes.items() if code in _ABSENT]
        return sorted(absences, key=lambda item: (-item[1], item[0]))[:n]

    def persistent_share_of(self, upns: Iterable[str]) -> float:
        rates = [self.absence_by_pupil[u] for u in upns if u in self.absence_by_pupil]
        return sum(rate >= 0.1 for rate in rates) / len(rates) if rates else 0.0


def summarise(rows: Iterable[MarkRow]) -> AbsenceSummary:
    """Absence, persistent and severe absence, and codes, over the marks in `rows`."""
    codes: dict[str, int] = {}
    possible: dict[str, int] = {}
    absent: dict[str, int] = {}
    weekday_possible = [0] * 7
    weekday_absent = [0] * 7
    marks = 0
    for row in rows:
        marks += 1
        code = row.code
        codes[code] = codes.get(code, 0) + 1
        if code in _NOT_POSSIBLE:
            continue
        upn = row.upn
        weekday = row.day.weekday()
        possible[upn] = possible.get(upn, 0) + 1
        weekday_possible[weekday] += 1
        if code in _ABSENT:
            absent[upn] = absent.get(upn, 0) + 1
            weekday_absent[weekday] += 1
    by_pupil = {upn: absent.get(upn, 0) / n for upn, n in possible.items()}
    return AbsenceSummary(
        pupils=len(possible),
        marks=marks,
        possible=sum(possible.values()),
        absent=sum(absent.values()),
        persistent=sum(rate >= 0.1 for rate in by_pupil.values()),
        severe=sum(rate >= 0.5 for rate in by_pupil.values()),
        codes=codes,
        weekday_possible=weekday_possible,
        weekday_absent=weekday_absent,
        absence_by_pupil=by_pupil,
    )
