"""Loading school policies: the presets for the seed schools, or any policy file.

`load_policy` takes a preset name (`all-saints`) or the path of a YAML file and returns a
validated `SchoolPolicy`, or raises `PolicyError` listing every problem as
`field.path: reason (line N)`. Loaded files are cached by resolved path (and modification
time, so an edited file is read again), since the sweep loads a school's policy often.
"""

import re
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from models.policy import SchoolPolicy, did_you_mean

PRESETS_DIR = Path(__file__).parent / "presets"

__all__ = ["PRESETS_DIR", "PolicyError", "list_presets", "load_policy", "policy_from_yaml"]


class PolicyError(ValueError):
    """A policy that cannot be used, with every problem found as `field.path: reason`."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__(f"{source}: {count}\n" + "\n".join(f"  {p}" for p in problems))


def list_presets() -> list[str]:
    return sorted(path.stem for path in PRESETS_DIR.glob("*.yaml"))


def load_policy(path_or_name: str | Path) -> SchoolPolicy:
    """A preset by name (`all-saints`) or a policy file by path."""
    path = _resolve(path_or_name)
    return _load_file(path, path.stat().st_mtime_ns)


def policy_from_yaml(text: str, source: str = "<policy>") -> SchoolPolicy:
    """A policy from YAML text; `source` names it in error messages."""
    try:
        data = yaml.load(text, Loader=_PolicyLoader)  # a SafeLoader: no arbitrary objects
    except yaml.YAMLError as error:
        raise PolicyError(source, [_yaml_problem(error)]) from None
    if data is None:
        raise PolicyError(source, ["the file is empty"])
    if not isinstance(data, dict):
        raise PolicyError(source, ["a policy is a YAML mapping of keys (school:, register:, ...)"])
    try:
        return SchoolPolicy.model_validate(data)
    except ValidationError as error:
        lines = _line_finder(text)
        raise PolicyError(source, [_problem(e, lines) for e in error.errors()]) from None


@lru_cache(maxsize=256)
def _load_file(path: Path, mtime_ns: int) -> SchoolPolicy:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as error:
        raise PolicyError(str(path), [f"cannot read the file: {error.strerror}"]) from None
    return policy_from_yaml(text, source=path.name)


def _resolve(path_or_name: str | Path) -> Path:
    if isinstance(path_or_name, str) and re.fullmatch(r"[a-z0-9-]+", path_or_name):
        preset = PRESETS_DIR / f"{path_or_name}.yaml"
        if preset.is_file():
            return preset.resolve()
    path = Path(path_or_name).expanduser()
    if path.is_file():
        return path.resolve()
    raise PolicyError(
        str(path_or_name),
        [
            f"no such preset or file{did_you_mean(str(path_or_name), list_presets())}; "
            f"presets: {', '.join(list_presets())}"
        ],
    )


# --------------------------------------------------------------------------- YAML


class _PolicyLoader(yaml.SafeLoader):
    """YAML 1.1 as SafeLoader reads it, except that times like 13:10 and codes like 0886
    stay text (YAML 1.1 reads them as the base-60 number 790 and the octal number 454),
    and a key given twice is an error (SafeLoader would silently keep the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} is given twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_BASE_60 = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
_PolicyLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _BASE_60]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_PolicyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(
        r"""^(?:[-+]?0b[0-1_]+
        |[-+]?(?:0|[1-9][0-9_]*)
        |[-+]?0x[0-9a-fA-F_]+)$""",
        re.X,
    ),
    list("-+0123456789"),
)
_PolicyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
        |\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _yaml_problem(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    context = getattr(error, "context", None)
    reason = f"{context}, {problem}" if context else problem
    if mark is None:
        return f"YAML syntax error: {reason}"
    return f"line {mark.line + 1}, column {mark.column + 1}: YAML syntax error: {reason}"


def _line_finder(text: str) -> Callable[[tuple], int | None]:
    """Maps a field path to the line it is written on, for error messages."""
    try:
        root = yaml.compose(text, Loader=_PolicyLoader)
    except yaml.YAMLError:
        root = None

    def line_of(loc: tuple) -> int | None:
        node, line = root, None
        for part in loc:
            if isinstance(node, yaml.MappingNode):
                node = next((v for k, v in node.value if k.value == str(part)), None)
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
                node = node.value[part] if part < len(node.value) else None
            else:
                node = None
            if node is None:
                break
            line = node.start_mark.line + 1
        return line

    return line_of


def format_loc(loc: tuple) -> str:
    """('ladders', 1, 'stages', 0, 'enter_when') -> 'ladders[1].stages[0].enter_when'."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text or "(policy)"


def _problem(error: dict, line_of: Callable[[tuple], int | None]) -> str:
    loc = error["loc"]
    reason = error["msg"]
    if error["type"] == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        reason = f"unknown key {loc[-1]!r}"
        if allowed:
            hint = did_you_mean(str(loc[-1]), allowed)
            reason += hint or f"; allowed keys: {', '.join(allowed)}"
    elif error["type"] == "missing":
        reason = "required, but missing"
    elif error["type"] in ("enum", "literal_error") and len(str(error.get("input"))) > 2:
        # A guess at a word, not at an operator: '=<' is closer to '<' than to '<='.
        expected = re.findall(r"'([^']*)'", error.get("ctx", {}).get("expected", ""))
        reason += did_you_mean(str(error["input"]), expected)
    line = line_of(loc)
    where = f" (line {line})" if line else ""
    return f"{format_loc(loc)}: {reason}{where}"


def _allowed_keys(loc: tuple) -> list[str]:
    """The keys the model at `loc` accepts, found by walking the schema's annotations."""
    annotation: Any = SchoolPolicy
    for part in loc:
        annotation = _unwrap(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(str(part))
            if field is None:
                return []
            annotation = field.annotation
        elif get_origin(annotation) in (list, dict):
            annotation = get_args(annotation)[-1]
        else:
            return []
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return list(annotation.model_fields)
    return []


def _unwrap(annotation: Any) -> Any:
    """`X | None` -> X."""
    if get_origin(annotation) in (Union, type(int | None)):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation
