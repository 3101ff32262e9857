"""Staff actions on a case, found from the workflows themselves: every workflow Update is an
action named as the Update is, and its input dataclass's fields are the action's fields.

A new Update on a workflow is a new action for `attend case act` and for simulations, with
no code here. Values arrive as text (the command line) or as YAML values (a scenario) and are
converted to the field's type; a wrong field is refused with what the action takes.
"""

import dataclasses
import types
import typing
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from workflows.case import AttendanceCase
from workflows.episode import AbsenceEpisode

# The workflows staff act on, by the `kind` their CaseRecord rows carry.
CASE_WORKFLOWS: dict[str, type] = {
    "attendance_case": AttendanceCase,
    "absence_episode": AbsenceEpisode,
}
TRUE_WORDS = ("true", "yes", "y", "1", "on")
FALSE_WORDS = ("false", "no", "n", "0", "off")


class ActionError(ValueError):
    """An action that cannot be sent: unknown, or a field missing or of the wrong form."""


@dataclass(frozen=True)
class Action:
    name: str  # the Update's name
    workflow: type  # the workflow class that has it
    input_type: type  # the Update's input dataclass

    @property
    def fields(self) -> list[dataclasses.Field]:
        return list(dataclasses.fields(self.input_type))

    @property
    def required(self) -> list[str]:
        return [
            f.name
            for f in self.fields
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]

    def describe(self) -> str:
        """`name(field, field=default, ...)`, for help and error messages."""
        hints = typing.get_type_hints(self.input_type)
        parts = []
        for f in self.fields:
            kind = _type_name(hints[f.name])
            if f.name in self.required:
                parts.append(f"{f.name}: {kind}")
            else:
                parts.append(f"[{f.name}: {kind}]")
        return f"{self.name}({', '.join(parts)})"

    def make_input(self, values: dict[str, Any]) -> Any:
        """The Update's input from field values; raises ActionError naming the field."""
        hints = typing.get_type_hints(self.input_type)
        known = {f.name for f in self.fields}
        wrong = [key for key in values if _field_name(key) not in known]
        if wrong:
            raise ActionError(
                f"{self.name} has no field {', '.join(repr(k) for k in wrong)}; "
                f"it takes {self.describe()}"
            )
        given = {_field_name(key): value for key, value in values.items()}
        missing = [name for name in self.required if name not in given]
        if missing:
            raise ActionError(f"{self.name} needs {', '.join(missing)}; it takes {self.describe()}")
        converted = {}
        for name, value in given.items():
            try:
                converted[name] = convert(value, hints[name])
            except (TypeError, ValueError) as error:
                raise ActionError(f"{self.name}: {name}: {error}") from None
        return self.input_type(**converted)


def _field_name(key: str) -> str:
    return key.strip().lstrip("-").replace("-", "_")


def _type_name(hint: Any) -> str:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if _is_optional(hint) and len(args) == 1:
        return f"{_type_name(args[0])} or none"
    if typing.get_origin(hint) in (list, typing.List):  # noqa: UP006
        return f"list of {_type_name(args[0]) if args else 'text'}"
    return {str: "text", bool: "true/false", int: "number", float: "number"}.get(
        hint, getattr(hint, "__name__", str(hint))
    )


def _is_optional(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in (
        typing.get_args(hint)
    )


def convert(value: Any, hint: Any) -> Any:
    """A text or YAML value as the field's type (str, bool, int, float, X | None, list[X])."""
    if _is_optional(hint):
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
            return None
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        return convert(value, inner[0])
    origin = typing.get_origin(hint)
    if origin in (list, typing.List):  # noqa: UP006
        (inner,) = typing.get_args(hint) or (str,)
        items = value if isinstance(value, list) else str(value).split(",")
        return [convert(item, inner) for item in items]
    if hint is bool:
        if isinstance(value, bool):
            return value
        word = str(value).strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise ValueError(f"{value!r} is not true or false")
    if hint is int:
        if isinstance(value, bool):
            raise ValueError(f"{value!r} is not a whole number")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ValueError(f"{value!r} is not a whole number") from None
    if hint is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{value!r} is not a number") from None
    if hint is str:
        if isinstance(value, datetime):
            return value.isoformat(timespec="minutes")
        if isinstance(value, date):
            return value.isoformat()
        if isinstance(value, dict | list):
            raise ValueError(f"{value!r} is not text")
        return "" if value is None else str(value)
    raise TypeError(f"fields of type {hint} cannot be given here")


def updates_of(workflow: type) -> dict[str, Action]:
    """Every Update the workflow class defines, by name."""
    found: dict[str, Action] = {}
    workflow_definition = getattr(workflow, "__temporal_workflow_definition", None)
    for definition in workflow_definition.updates.values() if workflow_definition else []:
        if not definition.name:
            continue  # a dynamic Update has no name to act by
        hints = typing.get_type_hints(definition.fn)
        inputs = [hint for name, hint in hints.items() if name != "return"]
        if len(inputs) != 1 or not dataclasses.is_dataclass(inputs[0]):
            continue  # only Updates taking one dataclass are staff actions
        found[definition.name] = Action(definition.name, workflow, inputs[0])
    return found


def all_actions() -> dict[str, Action]:
    """Every staff action on every kind of case, by name."""
    found: dict[str, Action] = {}
    for workflow in CASE_WORKFLOWS.values():
        for name, action in updates_of(workflow).items():
            found.setdefault(name, action)
    return found


def find_action(name: str, workflow: type | None = None) -> Action:
    """An action by name (on one kind of workflow, if given); ActionError lists the known."""
    known = updates_of(workflow) if workflow else all_actions()
    action = known.get(name.replace("-", "_"))
    if action is None:
        where = f" on {workflow.__name__}" if workflow else ""
        raise ActionError(f"no action {name!r}{where}; actions: {', '.join(sorted(known))}")
    return action


def decision_key_from(awaiting: list[str]) -> str:
    """The key of the one decision a case waits for (its status's `decision:<key>`)."""
    keys = [a.removeprefix("decision:") for a in awaiting if a.startswith("decision:")]
    if not keys:
        raise ActionError("the case is not waiting for a decision")
    if len(keys) > 1:
        raise ActionError(f"the case waits for several decisions: give decision_key ({keys})")
    return keys[0]
