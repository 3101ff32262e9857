"""The register-close sweep end to end on the real Temporal dev server and real SQLite."""

from sqlmodel import Session, select

from models.tables import ThresholdCrossing, ThresholdState
from tests.registers import add_pupil, both, register
from worker import build_worker
from workflows.sweep import RegisterCloseInput, RegisterCloseSweep


async def test_sweep_records_crossings_once(temporal_env, engine, school, task_queue):
    # St Barnabas' writes home below 97%; the national penalty-notice threshold is 10
    # unauthorised sessions in 10 school weeks.
    with Session(engine, expire_on_commit=False) as session, session.begin():
        steady = add_pupil(session, school.id, 1)
        truant = add_pupil(session, school.id, 2)
        register(session, school.id, steady, "2026-09-03", "2026-11-25")
        days = ["2026-11-16", "2026-11-17", "2026-11-18", "2026-11-19", "2026-11-20"]
        register(
            session,
            school.id,
            truant,
            "2026-09-03",
            "2026-11-25",
            {k: v for day in days for k, v in both(day, "O").items()},
        )
    # Recording only: what the fan-out sends is tests/test_fanout.py's (its workflow IDs are
    # the pupils', shared by every test on the one dev server).
    async with build_worker(temporal_env.client, engine=engine, task_queue=task_queue):
        result = await temporal_env.client.execute_workflow(
            RegisterCloseSweep.run,
            RegisterCloseInput(
                school_id=school.id, as_of="2026-11-25", fan_out=False, list_changes=True
            ),
            id=f"sweep-{task_queue}",
            task_queue=task_queue,
        )
        # 10 O sessions of 74 + 34 = 108 possible sessions to Wed 25 Nov: 90.74%.
        crossed = {(c.pupil_id, c.threshold) for c in result.changes}
        assert result.pupils == 2
        assert (truant.id, "penalty_notice_consideration") in crossed
        assert (truant.id, "below_97") in crossed
        assert not any(pupil == steady.id for pupil, _ in crossed)

        again = await temporal_env.client.execute_workflow(
            RegisterCloseSweep.run,
            RegisterCloseInput(
                school_id=school.id, as_of="2026-11-25", fan_out=False, list_changes=True
            ),
            id=f"sweep-again-{task_queue}",
            task_queue=task_queue,
        )
        assert again.changes == result.changes  # the same day's crossings, not new ones
        # A school's own sweep returns the counts only, keeping its history small.
        counted = await temporal_env.client.execute_workflow(
            RegisterCloseSweep.run,
            RegisterCloseInput(school_id=school.id, as_of="2026-11-25", fan_out=False),
            id=f"sweep-counted-{task_queue}",
            task_queue=task_queue,
        )
        crossed = sum(c.direction == "crossed" for c in result.changes)
        assert (counted.changes, counted.crossed, counted.cleared) == ([], crossed, 0)
        assert result.crossed == crossed >= 2
    with Session(engine) as session:
        rows = session.exec(select(ThresholdCrossing)).all()
        assert len(rows) == len(result.changes)
        state = session.exec(
            select(ThresholdState).where(ThresholdState.pupil_id == truant.id)
        ).all()
        assert {s.threshold for s in state if s.active} >= {"penalty_notice_consideration"}
