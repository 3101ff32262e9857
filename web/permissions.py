"""Who may see which page and take which step: the one table the server checks.

The pages hide what a role may not do, but that is for tidiness only: every route checks
this table itself, and the workflows' own validators refuse a wrong step once more.
"""

from web.accounts import StaffRole

OFFICE = StaffRole.OFFICE
OFFICER = StaffRole.ATTENDANCE_OFFICER
HEAD = StaffRole.HEADTEACHER
GOVERNOR = StaffRole.GOVERNOR
LA = StaffRole.LA_OFFICER

# Pages. A governor sees the school's figures only: nothing that names a pupil.
PAGES: dict[str, frozenset[str]] = {
    "today": frozenset({OFFICE, OFFICER, HEAD}),
    "caseload": frozenset({OFFICE, OFFICER, HEAD, LA}),
    "case": frozenset({OFFICE, OFFICER, HEAD, LA}),
    "approvals": frozenset({OFFICER, HEAD}),
    "school": frozenset({OFFICE, OFFICER, HEAD, GOVERNOR, LA}),
}

# Steps on a case: the workflow Update each names. Only the headteacher (the Senior
# Attendance Champion) decides a legal step. An LA officer reads across their schools.
ACTIONS: dict[str, frozenset[str]] = {
    "record_contact": frozenset({OFFICE, OFFICER, HEAD}),
    "record_visit": frozenset({OFFICER, HEAD}),
    "schedule_meeting": frozenset({OFFICER, HEAD}),
    "record_meeting_outcome": frozenset({OFFICER, HEAD}),
    "record_contract": frozenset({OFFICER, HEAD}),
    "pause": frozenset({OFFICER, HEAD}),
    "resume": frozenset({OFFICER, HEAD}),
    "decide": frozenset({HEAD}),
    "move_to_stage": frozenset({OFFICER, HEAD}),
    # The school records what the LA did with a penalty-notice request (the case workflow
    # takes this step from school staff).
    "record_la_outcome": frozenset({OFFICER, HEAD}),
}

# The page each role starts on.
HOME: dict[str, str] = {
    OFFICE: "today",
    OFFICER: "caseload",
    HEAD: "approvals",
    GOVERNOR: "school",
    LA: "caseload",
}

# The role a step is recorded under, in the policy's words (models.policy.Role), which
# both workflows check.
WORKFLOW_ROLE: dict[str, str] = {
    OFFICE: "office_staff",
    OFFICER: "attendance_officer",
    HEAD: "headteacher",
}

REFUSALS: dict[str, str] = {
    "decide": "Only the headteacher (the Senior Attendance Champion) may decide a legal step.",
}


def may_see(role: str, page: str) -> bool:
    return role in PAGES.get(page, frozenset())


def may_do(role: str, action: str) -> bool:
    return role in ACTIONS.get(action, frozenset())


def refusal(action: str) -> str:
    return REFUSALS.get(action, "Your role may not take this step.")


def workflow_role(role: str) -> str:
    return WORKFLOW_ROLE.get(role, role)
