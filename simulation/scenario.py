"""A simulation scenario: one pupil's register history and the staff actions in it, as YAML.

    policy: st-barnabas              # a preset name, or a policy file (relative to this file)
    pupil:
      name: Amy Example
      year_group: 3
      flags: [social_worker]         # send, ehcp, fsm, social_worker, child_protection_plan,
                                     # looked_after, young_carer, part_time_timetable
    parents:
      - name: Jane Example
        relationship: Mother
        address: "1 Quarry Road, Tunbridge Wells"
        postcode: TN1 2EY
    register:
      from: 2026-09-03
      to: 2026-12-18
      default: /                     # every session's code unless said otherwise
      marks:
        2026-09-07: O                # both sessions
        2026-09-14: {am: O}          # one session (the other keeps the default)
    actions:
      2026-12-15:
        - schedule_meeting: {when: "2026-12-15T15:30", with_whom: both parents,
                             by: Mrs Duncombe, role: senior_attendance_champion}

Every problem is reported with its line and what is wrong; nothing runs until the whole
file is right.
"""

from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml

from models.codes import NATIONAL_CODES
from policies import PolicyError, load_policy
from simulation.actions import ActionError, all_actions, find_action

PUPIL_FLAGS = (
    "send",
    "ehcp",
    "fsm",
    "social_worker",
    "child_protection_plan",
    "looked_after",
    "young_carer",
    "part_time_timetable",
)
SECTIONS = ("policy", "pupil", "parents", "register", "actions", "description")
# "/" and "\" are the present codes of the morning and the afternoon: a default or a
# mark of either is written as the session's own.
PRESENT = {"AM": "/", "PM": "\\"}


class ScenarioError(ValueError):
    """A scenario that cannot be run, with every problem as `line N: where: why`."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "\n  ".join(["", *problems]).lstrip())


@dataclass
class Parent:
    forename: str
    surname: str
    relationship: str = "Parent"
    title: str = ""
    address: str = ""
    postcode: str = ""
    phone: str = ""


@dataclass
class ScenarioAction:
    day: date
    name: str
    fields: dict[str, Any]
    line: int

    def where(self) -> str:
        return f"line {self.line}, {self.day.isoformat()} {self.name}"


@dataclass
class Scenario:
    source: str
    policy: str  # a preset name or an absolute path
    forename: str
    surname: str
    year_group: int
    flags: list[str]
    parents: list[Parent]
    first_day: date
    last_day: date
    default_code: str
    marks: dict[tuple[date, str], str]  # (day, "AM"|"PM"): code, the exceptions
    actions: list[ScenarioAction] = field(default_factory=list)
    description: str = ""
    date_of_birth: date | None = None

    def code(self, day: date, session: str) -> str:
        code = self.marks.get((day, session), self.default_code)
        return PRESENT[session] if code in PRESENT.values() else code


# --------------------------------------------------------------------------- YAML with lines


class _Map(dict):
    line: int = 0
    key_lines: dict

    def line_of(self, key: Any) -> int:
        return self.key_lines.get(key, self.line)


class _List(list):
    line: int = 0
    item_lines: list


class _Loader(yaml.SafeLoader):
    """SafeLoader whose mappings and lists remember their lines; a repeated key is an error."""


def _construct_map(loader: _Loader, node: yaml.MappingNode):
    data = _Map()
    data.line, data.key_lines = node.start_mark.line + 1, {}
    yield data
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in data.key_lines:
            raise yaml.constructor.ConstructorError(
                None, None, f"{key!r} is given twice", key_node.start_mark
            )
        data.key_lines[key] = key_node.start_mark.line + 1
        data[key] = loader.construct_object(value_node, deep=True)


def _construct_list(loader: _Loader, node: yaml.SequenceNode):
    data = _List()
    data.line = node.start_mark.line + 1
    data.item_lines = [item.start_mark.line + 1 for item in node.value]
    yield data
    data.extend(loader.construct_object(item, deep=True) for item in node.value)


def _construct_timestamp(loader: _Loader, node: yaml.ScalarNode):
    """A date as YAML reads it; one that is no real day (2026-09-31) stays text, for the
    parser to refuse with its line."""
    try:
        return yaml.SafeLoader.construct_yaml_timestamp(loader, node)
    except ValueError:
        return loader.construct_scalar(node)


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_Loader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp)
_Loader.add_constructor("tag:yaml.org,2002:seq", _construct_list)


# --------------------------------------------------------------------------- parsing


def load_scenario(path: str | Path) -> Scenario:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as error:
        raise ScenarioError(str(path), [f"cannot read the file: {error.strerror}"]) from None
    return parse_scenario(text, source=path.name, base=path.parent)


def parse_scenario(text: str, source: str = "<scenario>", base: Path | None = None) -> Scenario:
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        problem = getattr(error, "problem", None) or error
        raise ScenarioError(source, [f"{where}{problem}"]) from None
    if not isinstance(data, _Map):
        raise ScenarioError(source, ["a scenario is a mapping: policy:, pupil:, register:, ..."])
    return _Parser(source, base or Path.cwd()).parse(data)


class _Parser:
    def __init__(self, source: str, base: Path):
        self.source = source
        self.base = base
        self.problems: list[str] = []

    def fail(self, line: int, message: str) -> None:
        self.problems.append(f"line {line}: {message}")

    def parse(self, data: _Map) -> Scenario:
        for key in data:
            if key not in SECTIONS:
                self.fail(data.line_of(key), f"unknown section {key!r}; one of {SECTIONS}")
        for key in ("policy", "pupil", "register"):
            if key not in data:
                self.fail(data.line, f"{key}: is missing")
        policy = self.policy(data.get("policy"), data.line_of("policy"))
        pupil = self.section(data, "pupil")
        register = self.section(data, "register")
        forename, surname, year_group, flags, born = self.pupil(pupil)
        first, last, default, marks = self.register(register)
        parents = self.parents(data.get("parents"), data.line_of("parents"))
        actions = self.actions(data.get("actions"), data.line_of("actions"), first, last)
        if self.problems:
            raise ScenarioError(self.source, self.problems)
        return Scenario(
            source=self.source,
            policy=policy,
            forename=forename,
            surname=surname,
            year_group=year_group,
            flags=flags,
            parents=parents,
            first_day=first,
            last_day=last,
            default_code=default,
            marks=marks,
            actions=actions,
            description=str(data.get("description") or ""),
            date_of_birth=born,
        )

    def section(self, data: _Map, key: str) -> _Map:
        value = data.get(key)
        if value is None:
            return _Map()
        if not isinstance(value, _Map):
            self.fail(data.line_of(key), f"{key}: is a mapping of fields")
            return _Map()
        return value

    def policy(self, value: Any, line: int) -> str:
        if not isinstance(value, str) or not value.strip():
            if value is not None:
                self.fail(line, "policy: a preset name (st-barnabas, ...) or a policy file")
            return ""
        name = value.strip()
        candidate = self.base / name
        if candidate.is_file():  # a policy file beside the scenario; otherwise a preset
            name = str(candidate.resolve())
        try:
            load_policy(name)
        except PolicyError as error:
            self.fail(line, f"policy: {error}")
        return name

    def text(self, data: _Map, key: str, *, required: bool = False) -> str:
        value = data.get(key)
        if value is None:
            if required:
                self.fail(data.line, f"{key}: is missing")
            return ""
        if isinstance(value, dict | list):
            self.fail(data.line_of(key), f"{key}: is text")
            return ""
        return str(value).strip()

    def day(self, value: Any, line: int, what: str) -> date | None:
        if isinstance(value, datetime):
            value = value.date()
        if isinstance(value, date):
            return value
        try:
            return date.fromisoformat(str(value))
        except ValueError:
            self.fail(line, f"{what}: {value!r} is not a date (YYYY-MM-DD)")
            return None

    def pupil(self, data: _Map):
        fields = ("name", "forename", "surname", "year_group", "flags", "date_of_birth")
        for key in data:
            if key not in fields:
                self.fail(data.line_of(key), f"pupil: unknown field {key!r}; one of {fields}")
        name = self.text(data, "name")
        forename, surname = self.text(data, "forename"), self.text(data, "surname")
        if name and not (forename or surname):
            forename, _, surname = name.rpartition(" ")
            forename, surname = (forename, surname) if forename else (surname, "")
        if not (forename or surname):
            self.fail(data.line, "pupil: name: is missing")
        year_group = data.get("year_group", 0)
        if (
            isinstance(year_group, bool)
            or not isinstance(year_group, int)
            or not (-1 <= year_group <= 14)
        ):
            self.fail(data.line_of("year_group"), "pupil: year_group: a number from 0 to 13")
            year_group = 0
        flags = data.get("flags") or []
        if not isinstance(flags, list):
            flags = [flags]
        for flag in flags:
            if flag not in PUPIL_FLAGS:
                self.fail(
                    data.line_of("flags"),
                    f"pupil: flags: unknown flag {flag!r}; one of {', '.join(PUPIL_FLAGS)}",
                )
        born = None
        if "date_of_birth" in data:
            born = self.day(data["date_of_birth"], data.line_of("date_of_birth"), "date_of_birth")
        return forename or "Pupil", surname or "Simulated", year_group, list(flags), born

    def parents(self, value: Any, line: int) -> list[Parent]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(line, "parents: is a list of parents")
            return []
        parents = []
        fields = ("name", "title", "relationship", "address", "postcode", "phone")
        for i, item in enumerate(value):
            item_line = value.item_lines[i] if isinstance(value, _List) else line
            if not isinstance(item, _Map):
                self.fail(item_line, "parents: each parent is a mapping (name:, relationship:)")
                continue
            for key in item:
                if key not in fields:
                    self.fail(item.line_of(key), f"parents: unknown field {key!r}; one of {fields}")
            name = self.text(item, "name", required=True)
            forename, _, surname = name.rpartition(" ")
            parents.append(
                Parent(
                    forename=forename or name,
                    surname=surname if forename else "",
                    relationship=self.text(item, "relationship") or "Parent",
                    title=self.text(item, "title"),
                    address=self.text(item, "address").replace(", ", "\n"),
                    postcode=self.text(item, "postcode"),
                    phone=self.text(item, "phone"),
                )
            )
        return parents

    def code(self, value: Any, line: int, what: str) -> str:
        code = "" if value is None else str(value).strip()
        if code not in NATIONAL_CODES:
            self.fail(line, f"{what}: {code!r} is not a national register code")
        return code

    def register(self, data: _Map):
        fields = ("from", "to", "default", "marks")
        for key in data:
            if key not in fields:
                self.fail(data.line_of(key), f"register: unknown field {key!r}; one of {fields}")
        first = last = None
        for key in ("from", "to"):
            if key not in data:
                self.fail(data.line, f"register: {key}: is missing")
        if "from" in data:
            first = self.day(data["from"], data.line_of("from"), "register: from")
        if "to" in data:
            last = self.day(data["to"], data.line_of("to"), "register: to")
        if first and last and last < first:
            self.fail(data.line_of("to"), "register: to: is before from")
        default = self.code(data.get("default", "/"), data.line_of("default"), "register: default")
        marks: dict[tuple[date, str], str] = {}
        given = data.get("marks") or _Map()
        if not isinstance(given, _Map):
            self.fail(data.line_of("marks"), "register: marks: a mapping of dates to codes")
            given = _Map()
        for key, value in given.items():
            line = given.line_of(key)
            day = self.day(key, line, "register: marks")
            if day is None:
                continue
            if first and last and not first <= day <= last:
                self.fail(line, f"register: marks: {day} is outside the register's dates")
            if isinstance(value, _Map):
                for session, code in value.items():
                    half = str(session).upper()
                    if half not in ("AM", "PM"):
                        self.fail(line, f"register: marks: {day}: {session!r} is not am or pm")
                        continue
                    marks[(day, half)] = self.code(code, line, f"register: marks: {day} {half}")
            else:
                code = self.code(value, line, f"register: marks: {day}")
                marks[(day, "AM")] = marks[(day, "PM")] = code
        return first or date.min, last or date.min, default, marks

    def actions(self, value: Any, line: int, first: date, last: date) -> list[ScenarioAction]:
        if value is None:
            return []
        if not isinstance(value, _Map):
            self.fail(line, "actions: a mapping of dates to lists of actions")
            return []
        known = all_actions()
        found = []
        for key, steps in value.items():
            key_line = value.line_of(key)
            day = self.day(key, key_line, "actions")
            if day is None:
                continue
            if not first <= day <= last:
                self.fail(key_line, f"actions: {day} is outside the register's dates")
            if isinstance(steps, _Map):
                steps = _List([steps])
                steps.item_lines = [key_line]
            if not isinstance(steps, list):
                self.fail(key_line, f"actions: {day}: a list of actions (- name: {{...}})")
                continue
            for i, step in enumerate(steps):
                step_line = steps.item_lines[i] if isinstance(steps, _List) else key_line
                if not isinstance(step, _Map) or len(step) != 1:
                    self.fail(step_line, f"actions: {day}: each action is `- name: {{fields}}`")
                    continue
                ((name, fields),) = step.items()
                fields = fields or {}
                if not isinstance(fields, dict):
                    self.fail(step_line, f"{day} {name}: its fields are a mapping")
                    continue
                try:
                    action = find_action(str(name))
                    check = dict(fields)
                    if action.name == "decide":  # the key is found from the case when it runs
                        check.setdefault("decision_key", "-")
                    action.make_input(check)
                except ActionError as error:
                    self.fail(step_line, f"{day} {name}: {error}")
                    continue
                if action.name not in known:
                    continue
                found.append(ScenarioAction(day, action.name, dict(fields), step_line))
        return sorted(found, key=lambda a: a.day)
