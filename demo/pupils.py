"""Demo pupils, their families and contacts, with the flags and absence propensity a real
roll would show.

Each pupil carries an absence *propensity* (the share of sessions they tend to miss),
drawn from a skewed (log-normal) distribution so that about one pupil in five ends up
persistently absent and about one in fifty severely absent, as in England. Siblings
share part of it, their free school meals, their contacts and their term-time holidays.
"""

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

from demo.names import (
    BOYS,
    DRAMA_PHONE_PREFIX,
    EMAIL_DOMAINS,
    GIRLS,
    GRANDFATHERS,
    GRANDMOTHERS,
    MEN,
    POSTCODE_LETTERS,
    STREETS,
    SURNAMES,
    TOWNS,
    WOMEN,
)
from demo.schools import DemoSchool
from models.upn import make_upn

# Shares of pupils with each flag (state schools; see DemoSchool.independent).
SEND_RATE = 0.13  # SEN support or an EHCP
EHCP_RATE = 0.04  # of all pupils: a subset of SEND
FSM_RATE = 0.24  # by family
SOCIAL_WORKER_RATE = 0.03  # includes every looked-after child and child protection plan
CHILD_PROTECTION_RATE = 0.01
LOOKED_AFTER_RATE = 0.007
YOUNG_CARER_RATE = 0.02
INDEPENDENT_SAFEGUARDING_FACTOR = 0.3
# Disadvantage clusters: flags more common in families with free school meals.
FSM_FLAG_FACTOR = 1.8

# Pupils with a pattern the returns and the penalty-notice duty must pick up, per pupil
# on roll (at least one of each in every school).
PART_TIME_RATE = 0.004
LONG_ILLNESS_RATE = 0.012  # sickness return: 15 days of illness
LONG_RUN_RATE = 0.004  # attendance return: 10 continuous days of unauthorised absence
MISSING_RATE = 0.002  # absent without explanation up to the register's last day
TRUANCY_RATE = 0.006  # penalty-notice duty: 10 unauthorised sessions in 10 school weeks

# Absence propensity: log(share of sessions missed) = MU + SIGMA * z + shifts, where z
# mixes a family part and the pupil's own part.
PROPENSITY_MU = -4.15
PROPENSITY_SIGMA = 1.5
FAMILY_SHARE = 0.55  # weight of the family part of z (siblings' absence is correlated)
PROPENSITY_CAP = 0.95
SHIFTS = {
    "fsm": 0.95,
    "send": 0.3,
    "ehcp": 0.15,
    "social_worker": 0.35,
    "child_protection_plan": 0.2,
    "young_carer": 0.4,
}
# Reception catches everything; absence climbs through secondary school.
YEAR_SHIFTS = {0: 0.15, 1: 0.0, 2: -0.1, 3: -0.15, 4: -0.15, 5: -0.15, 6: -0.1}
YEAR_SHIFTS |= {7: 0.1, 8: 0.3, 9: 0.45, 10: 0.5, 11: 0.55, 12: 0.2, 13: 0.3}

# Lateness: share of mornings a pupil is late, log-normal around LATE_MEDIAN.
LATE_MEDIAN = 0.012
LATE_SIGMA = 1.2
LATE_CAP = 0.4

# Family shapes and how many of a family's children are at the same school.
FAMILY_SHAPES = {"two parents": 0.58, "mother": 0.28, "father": 0.06, "grandparents": 0.08}
LIVES_APART_RATE = 0.2  # of two-parent families: the second parent has another address
EMERGENCY_CONTACT_RATE = 0.45
CHILDREN_AT_SCHOOL = {1: 0.62, 2: 0.3, 3: 0.07, 4: 0.01}
SIBLING_SPAN = 6  # years between the oldest and youngest sibling at the school
CHANNELS = {"email": 0.7, "post": 0.15, "both": 0.15}
HOLIDAY_FAMILY_RATE = 0.14  # families who sometimes take holidays in term time


class Profile:
    """Absence patterns beyond a pupil's propensity."""

    TYPICAL = "typical"
    LONG_ILLNESS = "long-term illness"
    LONG_RUN = "long run of unauthorised absence"
    MISSING = "missing: absent without explanation to the last day"
    TRUANCY = "truancy"
    PART_TIME = "part-time timetable"


@dataclass(slots=True)
class DemoContact:
    priority: int
    title: str
    forename: str
    surname: str
    relationship: str
    parental_responsibility: bool
    phone: str
    email: str
    address: str
    postcode: str
    preferred_channel: str


@dataclass(slots=True)
class DemoFamily:
    surname: str
    contacts: list[DemoContact]
    fsm: bool
    propensity_z: float  # the family's part of its children's absence propensity
    holiday_seed: int | None  # decides term-time holidays, so siblings take the same ones


@dataclass(slots=True)
class DemoPupil:
    upn: str
    forename: str
    surname: str
    sex: str
    date_of_birth: date
    year_group: int
    family: DemoFamily
    school_urn: str
    send: bool = False
    ehcp: bool = False
    social_worker: bool = False
    child_protection_plan: bool = False
    looked_after: bool = False
    young_carer: bool = False
    part_time_timetable: bool = False
    propensity: float = 0.0  # share of sessions the pupil tends to miss
    lateness: float = 0.0  # share of mornings the pupil tends to be late
    profile: str = Profile.TYPICAL
    part_time_days: tuple[int, ...] = ()  # weekdays (0 Monday) with afternoons off
    own_z: float = field(default=0.0, repr=False)

    @property
    def fsm(self) -> bool:
        return self.family.fsm

    @property
    def contacts(self) -> list[DemoContact]:
        return self.family.contacts


def _pick(rng: random.Random, weights: dict[str, float] | dict[int, float]):
    return rng.choices(list(weights), weights=list(weights.values()))[0]


class _People:
    """Names, addresses and phone numbers for one school's families."""

    def __init__(self, school: DemoSchool, rng: random.Random):
        self.rng = rng
        self.towns = TOWNS[school.area]
        self.emails: set[str] = set()

    def phone(self) -> str:
        return f"{DRAMA_PHONE_PREFIX}{self.rng.randrange(1000):03d}"

    def postcode(self, districts: Sequence[str]) -> str:
        rng = self.rng
        letters = rng.choice(POSTCODE_LETTERS) + rng.choice(POSTCODE_LETTERS)
        return f"{rng.choice(districts)} {rng.randint(1, 9)}{letters}"

    def address(self) -> tuple[str, str]:
        rng = self.rng
        town, districts = rng.choice(self.towns)
        street = f"{rng.randint(1, 140)} {rng.choice(STREETS)}"
        if rng.random() < 0.12:
            street = f"Flat {rng.randint(1, 12)}\n{street}"
        return f"{street}\n{town}\nKent", self.postcode(districts)

    def email(self, forename: str, surname: str) -> str:
        rng = self.rng
        local = "".join(ch for ch in f"{forename}.{surname}".lower() if ch.isalpha() or ch == ".")
        while True:
            candidate = f"{local}{rng.randint(1, 99)}@{rng.choice(EMAIL_DOMAINS)}"
            if candidate not in self.emails:
                self.emails.add(candidate)
                return candidate

    def contact(
        self,
        *,
        title: str,
        forename: str,
        surname: str,
        relationship: str,
        parental_responsibility: bool = True,
        home: tuple[str, str] | None = None,
        channel: str | None = None,
    ) -> DemoContact:
        """A contact; `priority` is set when the family's list is complete."""
        channel = channel or _pick(self.rng, CHANNELS)
        wants_email = channel != "post" or self.rng.random() < 0.5
        address, postcode = home or self.address()
        return DemoContact(
            priority=0,
            title=title,
            forename=forename,
            surname=surname,
            relationship=relationship,
            parental_responsibility=parental_responsibility,
            phone=self.phone(),
            email=self.email(forename, surname) if wants_email else "",
            address=address,
            postcode=postcode,
            preferred_channel=channel,
        )

    def family(self, *, fsm: bool, holiday_seed: int | None) -> DemoFamily:
        rng = self.rng
        surname = rng.choice(SURNAMES)
        home = self.address()
        shape = _pick(rng, FAMILY_SHAPES)
        mother_title = _pick(rng, {"Mrs": 0.5, "Ms": 0.3, "Miss": 0.15, "Dr": 0.05})
        father_title = "Dr" if rng.random() < 0.05 else "Mr"
        contacts: list[DemoContact] = []
        if shape in ("two parents", "mother"):
            mother_surname = surname if rng.random() < 0.8 else rng.choice(SURNAMES)
            contacts.append(
                self.contact(
                    title=mother_title,
                    forename=rng.choice(WOMEN),
                    surname=mother_surname,
                    relationship="Mother",
                    home=home,
                )
            )
        if shape in ("two parents", "father"):
            apart = shape == "two parents" and rng.random() < LIVES_APART_RATE
            father = self.contact(
                title=father_title,
                forename=rng.choice(MEN),
                surname=surname,
                relationship="Father",
                home=None if apart else home,
            )
            if shape == "two parents" and rng.random() < 0.25:
                contacts.insert(0, father)
            else:
                contacts.append(father)
        if shape == "grandparents":
            # A special guardianship order gives grandparents parental responsibility.
            contacts.append(
                self.contact(
                    title="Mrs",
                    forename=rng.choice(GRANDMOTHERS),
                    surname=surname,
                    relationship="Grandmother",
                    home=home,
                )
            )
            if rng.random() < 0.6:
                contacts.append(
                    self.contact(
                        title="Mr",
                        forename=rng.choice(GRANDFATHERS),
                        surname=surname,
                        relationship="Grandfather",
                        home=home,
                    )
                )
        if rng.random() < EMERGENCY_CONTACT_RATE:
            contacts.append(self.emergency_contact(surname))
        for priority, contact in enumerate(contacts, start=1):
            contact.priority = priority
        return DemoFamily(
            surname=surname,
            contacts=contacts,
            fsm=fsm,
            propensity_z=rng.gauss(0, 1),
            holiday_seed=holiday_seed,
        )

    def emergency_contact(self, surname: str) -> DemoContact:
        rng = self.rng
        relationship = rng.choice(
            ["Grandmother", "Grandfather", "Aunt", "Uncle", "Family friend", "Neighbour"]
        )
        male = relationship in ("Grandfather", "Uncle") or (
            relationship in ("Family friend", "Neighbour") and rng.random() < 0.4
        )
        if relationship.startswith("Grand"):
            forename = rng.choice(GRANDFATHERS if male else GRANDMOTHERS)
        else:
            forename = rng.choice(MEN if male else WOMEN)
        related = relationship not in ("Family friend", "Neighbour")
        return self.contact(
            title="Mr" if male else _pick(rng, {"Mrs": 0.6, "Ms": 0.4}),
            forename=forename,
            surname=surname if related and rng.random() < 0.6 else rng.choice(SURNAMES),
            relationship=relationship,
            parental_responsibility=False,
            channel="email" if rng.random() < 0.5 else "post",
        )

    def foster_family(self) -> DemoFamily:
        """A looked-after child: foster carers, and the local authority, which shares
        parental responsibility under a care order."""
        rng = self.rng
        surname = rng.choice(SURNAMES)
        carer = self.contact(
            title=_pick(rng, {"Mrs": 0.6, "Ms": 0.3, "Mr": 0.1}),
            forename=rng.choice(WOMEN),
            surname=surname,
            relationship="Foster carer",
            parental_responsibility=False,
        )
        town, districts = rng.choice(self.towns)
        social_worker = DemoContact(
            priority=0,
            title="Ms" if rng.random() < 0.7 else "Mr",
            forename=rng.choice(WOMEN),
            surname=rng.choice(SURNAMES),
            relationship="Social worker (local authority)",
            parental_responsibility=True,
            phone=self.phone(),
            email="",
            address=f"Children's Social Work Services\nKent County Council\n{town}",
            postcode=self.postcode(districts),
            preferred_channel="email",
        )
        social_worker.email = self.email(social_worker.forename, social_worker.surname)
        carer.priority, social_worker.priority = 1, 2
        return DemoFamily(
            surname=surname,
            contacts=[carer, social_worker],
            fsm=False,
            propensity_z=rng.gauss(0, 1),
            holiday_seed=None,
        )


class _UpnAllocator:
    """Permanent UPNs: issued by the school where the pupil started Reception, serials
    climbing from a random start within each (LA, school, year)."""

    def __init__(self, school: DemoSchool, rng: random.Random):
        self.school = school
        self.rng = rng
        self.next: dict[tuple[int, int, int], int] = {}
        self.feeders = [
            (rng.choice(school.feeder_las), estab)
            for estab in rng.sample(range(2001, 3999), 16)
            if estab != school.estab
        ]

    def allocate(self, year_allocated: int, *, own_school: bool) -> str:
        sources = [(self.school.la_code, self.school.estab)] if own_school else []
        sources += self.rng.sample(self.feeders, len(self.feeders))
        for la, estab in sources:
            key = (la, estab, year_allocated % 100)
            serial = self.next.get(key) or self.rng.randint(1, 40)
            if serial <= 999:
                self.next[key] = serial + self.rng.randint(1, 2)
                return make_upn(la, estab, year_allocated, serial)
        raise ValueError(f"no UPN serials left for {self.school.name} in {year_allocated}")


def _families_by_year(roll: dict[int, int], rng: random.Random) -> list[list[int]]:
    """Group the places on roll into families: each family is the NC years of its
    children at the school (siblings in different years, at most SIBLING_SPAN apart)."""
    remaining = dict(roll)
    families: list[list[int]] = []
    while any(remaining.values()):
        years = [y for y, n in remaining.items() if n]
        first = rng.choices(years, weights=[remaining[y] for y in years])[0]
        size = _pick(rng, CHILDREN_AT_SCHOOL)
        others = [y for y in years if y != first and abs(y - first) <= SIBLING_SPAN]
        children = [first, *rng.sample(others, min(size - 1, len(others)))]
        for year in children:
            remaining[year] -= 1
        families.append(sorted(children))
    return families


def _birthday(year_group: int, academic_year: int, rng: random.Random) -> date:
    """A date of birth in the school year that puts the pupil in `year_group`."""
    first = date(academic_year - 5 - year_group, 9, 1)
    return first + timedelta(days=rng.randrange(365))


def generate_pupils(
    school: DemoSchool, rng: random.Random, *, academic_year: int = 2026
) -> list[DemoPupil]:
    """The school's roll for `academic_year`, in register order (year group, surname)."""
    people = _People(school, rng)
    upns = _UpnAllocator(school, rng)
    fsm_rate = 0.0 if school.independent else FSM_RATE
    safeguarding = INDEPENDENT_SAFEGUARDING_FACTOR if school.independent else 1.0
    # Looked-after children are placed alone: the chance for a family of one child that
    # gives LOOKED_AFTER_RATE of all pupils.
    children_per_family = sum(k * w for k, w in CHILDREN_AT_SCHOOL.items())
    single_share = CHILDREN_AT_SCHOOL[1] / children_per_family
    pupils: list[DemoPupil] = []
    for years in _families_by_year(dict(school.roll), rng):
        fostered = len(years) == 1 and rng.random() < (
            LOOKED_AFTER_RATE * safeguarding / single_share
        )
        if fostered:
            family = people.foster_family()
        else:
            holiday = rng.randrange(2**31) if rng.random() < HOLIDAY_FAMILY_RATE else None
            family = people.family(fsm=rng.random() < fsm_rate, holiday_seed=holiday)
        for year in years:
            pupils.append(
                _pupil(school, year, family, fostered, safeguarding, people, upns, academic_year)
            )
    for pupil in pupils:
        pupil.propensity = _propensity(pupil, school)
    _assign_profiles(pupils, rng)
    pupils.sort(key=lambda p: (p.year_group, p.surname, p.forename, p.upn))
    return pupils


def _pupil(
    school: DemoSchool,
    year: int,
    family: DemoFamily,
    fostered: bool,
    safeguarding: float,
    people: _People,
    upns: _UpnAllocator,
    academic_year: int,
) -> DemoPupil:
    rng = people.rng
    flag_factor = 1.0
    if family.fsm:
        flag_factor = FSM_FLAG_FACTOR
    elif not school.independent:
        flag_factor = (1 - FSM_RATE * FSM_FLAG_FACTOR) / (1 - FSM_RATE)
    sex = "F" if rng.random() < 0.49 else "M"
    send = rng.random() < SEND_RATE * flag_factor**0.5
    ehcp = send and rng.random() < EHCP_RATE / SEND_RATE
    protection = not fostered and rng.random() < CHILD_PROTECTION_RATE * flag_factor * safeguarding
    other_social_work = (SOCIAL_WORKER_RATE - CHILD_PROTECTION_RATE - LOOKED_AFTER_RATE) / (
        1 - CHILD_PROTECTION_RATE - LOOKED_AFTER_RATE
    )
    social_worker = (
        fostered or protection or rng.random() < other_social_work * flag_factor * safeguarding
    )
    # Pupils who started Reception here have the school's own UPNs; the rest came with
    # a UPN from another school (secondary schools: all of them).
    own_school = 0 in school.year_groups and rng.random() < (0.88 if year <= 6 else 0.5)
    return DemoPupil(
        upn=upns.allocate(academic_year - year, own_school=own_school),
        forename=rng.choice(GIRLS if sex == "F" else BOYS),
        surname=family.surname,
        sex=sex,
        date_of_birth=_birthday(year, academic_year, rng),
        year_group=year,
        family=family,
        school_urn=school.urn,
        send=send,
        ehcp=ehcp,
        social_worker=social_worker,
        child_protection_plan=protection,
        looked_after=fostered,
        young_carer=rng.random() < YOUNG_CARER_RATE * flag_factor,
        lateness=min(LATE_CAP, math.exp(rng.gauss(math.log(LATE_MEDIAN), LATE_SIGMA))),
        own_z=rng.gauss(0, 1),
    )


def _assign_profiles(pupils: list[DemoPupil], rng: random.Random) -> None:
    """A few pupils in every school with the patterns the returns and the penalty-notice
    duty exist for; part-time timetables go to pupils with SEND where there are any."""
    n = len(pupils)
    if not n:
        return
    typical = list(range(n))
    rng.shuffle(typical)
    with_send = [i for i in typical if pupils[i].send] or typical
    chosen: set[int] = set()
    for rate, profile, pool in (
        (PART_TIME_RATE, Profile.PART_TIME, with_send),
        (LONG_ILLNESS_RATE, Profile.LONG_ILLNESS, typical),
        (LONG_RUN_RATE, Profile.LONG_RUN, typical),
        (MISSING_RATE, Profile.MISSING, typical),
        (TRUANCY_RATE, Profile.TRUANCY, typical),
    ):
        candidates = [i for i in pool if i not in chosen]
        for i in candidates[: max(1, round(n * rate))]:
            chosen.add(i)
            pupils[i].profile = profile
    for i in sorted(chosen):
        pupil = pupils[i]
        if pupil.profile == Profile.PART_TIME:
            pupil.part_time_timetable = True
            pupil.part_time_days = tuple(sorted(rng.sample(range(5), rng.randint(2, 5))))
        elif pupil.profile == Profile.LONG_ILLNESS:
            pupil.propensity = max(pupil.propensity, rng.uniform(0.2, 0.45))
        elif pupil.profile == Profile.LONG_RUN:
            pupil.propensity = max(pupil.propensity, rng.uniform(0.04, 0.1))


def _propensity(pupil: DemoPupil, school: DemoSchool) -> float:
    z = FAMILY_SHARE * pupil.family.propensity_z + math.sqrt(1 - FAMILY_SHARE**2) * pupil.own_z
    log_share = PROPENSITY_MU + PROPENSITY_SIGMA * z + school.absence_shift
    log_share += YEAR_SHIFTS.get(pupil.year_group, 0.0)
    log_share += sum(shift for flag, shift in SHIFTS.items() if getattr(pupil, flag))
    return min(PROPENSITY_CAP, math.exp(log_share))
