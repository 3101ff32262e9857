"""The absence episode's reads: the school's day-by-day procedure for unexplained absence,
taken from its policy, and which path the pupil is on.

The procedure is a plain copy of the policy's `absence_episode` block (models.policy) that
the workflow carries in its history, so that editing a policy never changes an episode
already running. The first day's timed contacts and the day-by-day steps become one list of
days; a step the policy repeats daily is repeated by `EpisodeProcedure.actions_for`.
"""

from dataclasses import dataclass, field, replace

from temporalio import activity
from temporalio.exceptions import ApplicationError

from database import SessionFactory

# Actions the engine records itself (a referral raised for the local authority or the trust),
# besides the task it opens for whoever makes the call.
REFERRALS = {
    "cme_referral": "Referral to the local authority: child missing education",
    "missing_persons_referral": "Referral to missing persons",
}
# Every action a policy may name (models.policy.EpisodeAction), in the schools' words.
ACTION_WORDS = {
    "call_parents": "Phone parents/carers",
    "text_parents": "Text parents/carers",
    "email_parents": "Email parents/carers",
    "call_emergency_contacts": "Phone the emergency contacts",
    "letter_home": "Letter home",
    "home_visit": "Home visit",
    "calling_card": "Leave a calling card",
    "notify_dsl": "Tell the designated safeguarding lead",
    "notify_social_worker": "Tell the pupil's social worker",
    "wider_search": "Wider search: all contacts, siblings' schools, agencies",
    "daily_contact_attempts": "Daily calls and texts to family and other contacts",
    "ask_tutor": "Ask the tutor",
    "ask_divisional_head": "Ask the divisional head",
    "ask_health_centre": "Ask the health centre",
    "ask_boarding_house": "Tell the boarding house: search, roommates and friends asked",
    "notify_senior_staff": "Tell the senior staff (missing pupil protocol)",
    "notify_police": "Call the police if the pupil is at risk",
    **REFERRALS,
}
VISIT_ACTIONS = ("home_visit", "calling_card")
# The pupil flags (models.policy.PupilFlag) the register's pupil table records.
PUPIL_FLAG_WORDS = {
    "social_worker": "social worker",
    "child_protection_plan": "child protection plan",
    "looked_after": "looked after",
    "send": "SEND",
}


@dataclass
class EpisodeAction:
    action: str  # a key of ACTION_WORDS
    role: str = "office_staff"  # models.policy.Role
    due: str = ""  # HH:MM local time on that day; empty: by the end of the school day
    optional: bool = False  # "may": a task only once an attempt that day has failed


@dataclass
class EpisodeDay:
    day: int  # school day of absence, 1-based
    actions: list[EpisodeAction] = field(default_factory=list)
    repeat_daily: bool = False  # and again every later day until contact is made


@dataclass
class EpisodeProcedure:
    end_of_day: str = ""  # HH:MM: tasks with no time are due then; empty: by midnight
    days: list[EpisodeDay] = field(default_factory=list)
    safeguarding_days: list[EpisodeDay] = field(default_factory=list)
    safeguarding_applies_to: list[str] = field(default_factory=list)

    def plan(self, safeguarding: bool) -> list[EpisodeDay]:
        return self.safeguarding_days if safeguarding and self.safeguarding_days else self.days

    def actions_for(self, day: int, safeguarding: bool) -> list[EpisodeAction]:
        """The day's own actions, then those repeated daily from earlier steps (the latest
        step first); each action once, and a referral never repeated."""
        plan = self.plan(safeguarding)
        found: dict[str, EpisodeAction] = {}

        def add(action: EpisodeAction) -> None:
            had = found.get(action.action)
            if had is None or (had.optional and not action.optional):  # "must" beats "may"
                found[action.action] = action

        for step in plan:
            if step.day == day:
                for action in step.actions:
                    add(action)
        for step in sorted(plan, key=lambda s: -s.day):
            if step.repeat_daily and step.day < day:
                for action in step.actions:
                    if action.action not in REFERRALS:
                        add(replace(action, due=""))
        return list(found.values())


def _first_day(contacts) -> list[EpisodeDay]:
    """The first day's contacts in time order; one with no time follows the one before it."""
    actions: list[EpisodeAction] = []
    due = ""
    for contact in contacts:
        due = contact.due or due
        actions += [EpisodeAction(str(a), contact.by.value, due) for a in contact.actions]
        actions += [
            EpisodeAction(str(a), contact.by.value, due, optional=True)
            for a in contact.possible_actions
        ]
    return [EpisodeDay(1, actions)] if actions else []


def _steps(steps, leave_out: frozenset[str] = frozenset()) -> list[EpisodeDay]:
    """The later days' steps (a step on day 1 stays apart from the first-day contacts: it
    may repeat daily, they do not), without the actions in `leave_out`."""
    days = []
    for step in steps:
        actions = [EpisodeAction(str(a), step.by.value) for a in step.actions]
        actions += [
            EpisodeAction(str(a), step.by.value, optional=True) for a in step.possible_actions
        ]
        actions = [a for a in actions if a.action not in leave_out]
        if actions:
            days.append(EpisodeDay(step.day, actions, step.repeat_daily))
    return days


def episode_procedure(policy) -> EpisodeProcedure:
    """The workflow's copy of a SchoolPolicy's absence procedure (models.policy)."""
    episode = policy.absence_episode
    variant = episode.safeguarding
    safeguarding_days: list[EpisodeDay] = []
    if variant is not None:
        # The shortened path: the variant's own first day and steps; the usual steps go on
        # beside them, less every action the variant takes on its own days (its earlier
        # referral replaces the usual one).
        taken = frozenset(str(a) for s in variant.steps for a in (*s.actions, *s.possible_actions))
        safeguarding_days = (
            _first_day(variant.first_day or episode.first_day)
            + _steps(variant.steps)
            + _steps(episode.steps, leave_out=taken)
        )
    return EpisodeProcedure(
        end_of_day=policy.register.day_ends or "",
        days=_first_day(episode.first_day) + _steps(episode.steps),
        safeguarding_days=safeguarding_days,
        safeguarding_applies_to=[str(f) for f in variant.applies_to] if variant else [],
    )


@dataclass
class LoadEpisodeProcedureInput:
    school_id: int
    pupil_id: int


@dataclass
class LoadEpisodeProcedureResult:
    procedure: EpisodeProcedure
    safeguarding: bool  # the pupil is on the policy's safeguarding path
    because: list[str] = field(default_factory=list)  # the pupil's flags that put them there


class EpisodeActivities:
    def __init__(self, session_factory: SessionFactory):
        self.session_factory = session_factory

    @activity.defn
    def load_episode_procedure(
        self, input: LoadEpisodeProcedureInput
    ) -> LoadEpisodeProcedureResult:
        """The school's procedure, and whether the pupil's flags put them on its
        safeguarding path (social worker, child protection plan, looked after...)."""
        from models.tables import Pupil, School
        from policies import load_policy

        with self.session_factory() as session:
            school = session.get(School, input.school_id)
            pupil = session.get(Pupil, input.pupil_id)
            if school is None or pupil is None or pupil.school_id != school.id:
                raise ApplicationError(
                    f"no pupil {input.pupil_id} at school {input.school_id}", non_retryable=True
                )
            procedure = episode_procedure(load_policy(school.policy))
        because = [
            PUPIL_FLAG_WORDS[flag]
            for flag in procedure.safeguarding_applies_to
            if flag in PUPIL_FLAG_WORDS and getattr(pupil, flag)
        ]
        return LoadEpisodeProcedureResult(
            procedure=procedure,
            safeguarding=bool(because and procedure.safeguarding_days),
            because=because,
        )
