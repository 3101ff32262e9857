"""The register-close sweep's side effects: compute a school's figures and record which
pupils crossed (or came back under) which of the policy's thresholds."""

from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from sqlalchemy import delete, insert, select, tuple_
from temporalio import activity

from database import SessionFactory
from figures.compute import compute_figures
from models.tables import Pupil, School, ThresholdCrossing, ThresholdState
from policies import load_policy


@dataclass
class RecordThresholdsInput:
    school_id: int
    as_of: str  # ISO date


@dataclass
class ThresholdChange:
    pupil_id: int
    threshold: str
    direction: str  # crossed | cleared
    value: float | None = None


@dataclass
class RecordThresholdsResult:
    school_id: int
    as_of: str
    pupils: int
    changes: list[ThresholdChange] = field(default_factory=list)


class SweepActivities:
    def __init__(self, session_factory: SessionFactory):
        self.session_factory = session_factory

    @activity.defn
    def record_threshold_crossings(self, input: RecordThresholdsInput) -> RecordThresholdsResult:
        """Idempotent: a retry finds the day's crossings already recorded and returns them."""
        as_of = date.fromisoformat(input.as_of)
        with self.session_factory() as session, session.begin():
            school = session.get(School, input.school_id)
            if school is None:
                raise ValueError(f"no school with id {input.school_id}")
            policy = load_policy(school.policy)
            figures = compute_figures(
                session=session, school_id=school.id, as_of=as_of, rules=policy.figure_rules()
            )
            _record_changes(session, school.id, as_of, policy.thresholds, figures)
            crossings = session.scalars(
                select(ThresholdCrossing)
                .where(ThresholdCrossing.school_id == school.id, ThresholdCrossing.on_day == as_of)
                .order_by(ThresholdCrossing.pupil_id, ThresholdCrossing.threshold)
            ).all()
            return RecordThresholdsResult(
                school_id=school.id,
                as_of=input.as_of,
                pupils=len(figures),
                changes=[
                    ThresholdChange(c.pupil_id, c.threshold, c.direction, c.value)
                    for c in crossings
                ],
            )


def _record_changes(session, school_id: int, as_of: date, thresholds, figures) -> None:
    """Compare each pupil's thresholds now with the stored state; store what changed."""
    state = ThresholdState.__table__
    known = {
        (pupil_id, name): active
        for pupil_id, name, active in session.connection().execute(
            select(state.c.pupil_id, state.c.threshold, state.c.active)
            .join(Pupil, Pupil.id == state.c.pupil_id)
            .where(Pupil.school_id == school_id)
        )
    }
    now = datetime.now(UTC)
    new_state: list[dict] = []
    crossings: list[dict] = []
    for pupil in figures:
        for threshold in thresholds:
            holds = threshold.holds(pupil)
            if holds == known.get((pupil.pupil_id, threshold.name), False):
                continue
            value = getattr(pupil, threshold.figure)
            value = float(value) if value is not None else None
            new_state.append(
                {
                    "pupil_id": pupil.pupil_id,
                    "threshold": threshold.name,
                    "active": holds,
                    "since": as_of,
                    "value": value,
                }
            )
            crossings.append(
                {
                    "school_id": school_id,
                    "pupil_id": pupil.pupil_id,
                    "threshold": threshold.name,
                    "direction": "crossed" if holds else "cleared",
                    "on_day": as_of,
                    "value": value,
                    "recorded_at": now,
                }
            )
    if not new_state:
        return
    connection = session.connection()
    keys = [(s["pupil_id"], s["threshold"]) for s in new_state]
    for start in range(0, len(keys), 500):
        connection.execute(
            delete(state).where(
                tuple_(state.c.pupil_id, state.c.threshold).in_(keys[start : start + 500])
            )
        )
    connection.execute(insert(state), new_state)
    connection.execute(insert(ThresholdCrossing), crossings)
