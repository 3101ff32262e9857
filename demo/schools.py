"""The demo schools: the four seed schools, and made-up schools for benchmarks.

URNs and establishment numbers are plausible for Kent (LA 886), not the real ones:
maintained and academy primaries have 2xxx/3xxx numbers, secondaries and all-through
schools 4xxx, independent schools 6xxx.
"""

import random
from collections.abc import Iterable
from dataclasses import dataclass

from demo.names import TOWNS

KENT = 886


@dataclass(frozen=True)
class DemoSchool:
    name: str
    policy: str  # the policy preset the school runs
    urn: str
    estab: int
    roll: tuple[tuple[int, int], ...]  # (NC year, pupils): 0 is Reception
    area: str  # where families live: a key of demo.names.TOWNS
    la_code: int = KENT
    independent: bool = False  # no free school meals; fewer pupils with a social worker
    absence_shift: float = 0.0  # added to every pupil's log absence propensity
    feeder_las: tuple[int, ...] = (KENT,)  # where pupils joining from elsewhere got UPNs

    def __post_init__(self) -> None:
        if self.area not in TOWNS:
            raise ValueError(f"unknown area {self.area!r}; known: {', '.join(TOWNS)}")

    @property
    def pupils(self) -> int:
        return sum(count for _, count in self.roll)

    @property
    def year_groups(self) -> tuple[int, ...]:
        return tuple(year for year, _ in self.roll)


def even_roll(years: Iterable[int], total: int) -> tuple[tuple[int, int], ...]:
    """`total` pupils spread as evenly as whole numbers allow over `years`."""
    years = list(years)
    base, extra = divmod(total, len(years))
    return tuple((year, base + (1 if i < extra else 0)) for i, year in enumerate(years))


PRIMARY = range(0, 7)  # Reception to Year 6

ST_BARNABAS = DemoSchool(
    name="St Barnabas' CE Primary",
    policy="st-barnabas",
    urn="118822",
    estab=3318,
    roll=even_roll(PRIMARY, 210),
    area="tunbridge-wells",
    absence_shift=-0.05,
)
ALL_SAINTS = DemoSchool(
    name="All Saints' CE Primary",
    policy="all-saints",
    urn="145873",
    estab=3342,
    roll=even_roll(PRIMARY, 420),
    area="maidstone",
)
SEVENOAKS = DemoSchool(
    name="Sevenoaks School",
    policy="sevenoaks",
    urn="118949",
    estab=6009,
    roll=((7, 125), (8, 125), (9, 130), (10, 135), (11, 135), (12, 225), (13, 225)),
    area="sevenoaks",
    independent=True,
    absence_shift=-0.75,
    feeder_las=(KENT, KENT, KENT, 305, 306, 936),  # Kent, Bromley, Croydon, Surrey
)
# The seed does not say its phase (its register is taken by class teachers): the demo
# makes it an all-through academy, Reception to Year 11.
SPRINGBANK = DemoSchool(
    name="Springbank Academy",
    policy="springbank",
    urn="148406",
    estab=4126,
    roll=even_roll(range(0, 12), 600),
    area="swale",
    absence_shift=0.1,
)

DEMO_SCHOOLS: dict[str, DemoSchool] = {
    school.policy: school for school in (ST_BARNABAS, ALL_SAINTS, SEVENOAKS, SPRINGBANK)
}


def synthetic_schools(total_pupils: int, *, rng: random.Random) -> list[DemoSchool]:
    """A made-up local authority of about `total_pupils` pupils, Kent-shaped: half the
    pupils in primaries of about 250, half in secondaries of about 1,150 (Kent has about
    600 schools and 230,000 pupils). For benchmarks; every school uses the St Barnabas'
    policy preset unless the caller swaps it."""
    schools: list[DemoSchool] = []
    areas = list(TOWNS)
    remaining = total_pupils
    primary_estab, secondary_estab = 2000, 4000
    while remaining > 0:
        secondary = rng.random() < 0.18
        size = min(remaining, max(60, round(rng.gauss(1150 if secondary else 250, 250))))
        remaining -= size
        if secondary:
            secondary_estab += 1
            estab, years = secondary_estab, range(7, 12)
        else:
            primary_estab += 1
            estab, years = primary_estab, PRIMARY
        schools.append(
            DemoSchool(
                name=f"Demo {'Secondary' if secondary else 'Primary'} School {len(schools) + 1}",
                policy="st-barnabas",
                urn=f"{900000 + len(schools) + 1}",
                estab=estab,
                roll=even_roll(years, size),
                area=rng.choice(areas),
            )
        )
    return schools
