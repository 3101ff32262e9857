"""Determinism guard: the recorded histories in tests/histories/ (real runs of each
workflow, written by the tests with `--record-histories`) must replay on today's code. A
change to a workflow that would break a running case, episode or sweep fails here; such a
change needs `workflow.patched` or a new workflow type (see the README)."""

import json

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from tests.conftest import HISTORIES
from worker import WORKFLOWS

RECORDED = sorted(HISTORIES.glob("*.json"))


def workflow_type(kept: dict) -> str:
    first = kept["history"]["events"][0]
    return first["workflowExecutionStartedEventAttributes"]["workflowType"]["name"]


def test_every_workflow_has_recorded_histories():
    recorded = {workflow_type(json.loads(path.read_text())) for path in RECORDED}
    assert recorded == {w.__name__ for w in WORKFLOWS}


@pytest.mark.parametrize("path", RECORDED, ids=[p.stem for p in RECORDED])
async def test_recorded_history_replays_on_todays_code(path):
    kept = json.loads(path.read_text())
    history = WorkflowHistory.from_json(kept["workflowId"], kept["history"])
    result = await Replayer(workflows=WORKFLOWS).replay_workflow(
        history, raise_on_replay_failure=False
    )
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"
