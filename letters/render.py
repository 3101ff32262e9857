"""Letters from Jinja2 templates: the environment, the filters, template versions and the
per-recipient copies.

Templates live in `letters/templates/<language>/`, English (`en`) being the full set. A
school that writes to some parents in another language adds a folder (`pl/`, `ro/`, ...)
with the letters it has translated; a letter missing from it is sent in English, and the
stored letter says which language it is in.

Rendering is strict (StrictUndefined): a value a template needs and does not get is an
error, never a blank in a letter sent to a parent.
"""

import hashlib
import html as html_lib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import (
    BaseLoader,
    ChoiceLoader,
    DictLoader,
    Environment,
    FileSystemLoader,
    StrictUndefined,
    TemplateNotFound,
    meta,
    select_autoescape,
)
from markupsafe import Markup

TEMPLATES = Path(__file__).parent / "templates"
DEFAULT_LANGUAGE = "en"

# Each copy fills these in: the recipient's name and address, and the salutation. A layout
# whose address block breaks its lines with newlines (`white-space: pre-line`) says so with
# RECIPIENT_LINES; letters stored before it have RECIPIENT, and their copies keep <br>.
RECIPIENT = "<!--recipient-->"
RECIPIENT_LINES = "<!--recipient:lines-->"
SALUTATION = "<!--salutation-->"
NEWLINE = "&#10;"  # a line break in a .lines block, kept apart from the template's own newlines


# --------------------------------------------------------------------------- filters


def _as_date(value: date | str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return datetime.fromisoformat(value).date() if "T" in value else date.fromisoformat(value)


def long_date(value: date | str) -> str:
    """Monday 23 November 2026."""
    day = _as_date(value)
    return f"{day:%A} {day.day} {day:%B %Y}"


def short_date(value: date | str) -> str:
    """23 November 2026."""
    day = _as_date(value)
    return f"{day.day} {day:%B %Y}"


def clock(value: datetime | str) -> str:
    """9:00am, 1:30pm: the way a time is written in a letter (from a datetime, an ISO
    datetime or an "HH:MM" time)."""
    if isinstance(value, str) and len(value) == 5 and value[2] == ":":
        value = f"2000-01-01T{value}"
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    hour = moment.hour % 12 or 12
    return f"{hour}:{moment.minute:02d}{'am' if moment.hour < 12 else 'pm'}"


def long_datetime(value: datetime | str) -> str:
    """Tuesday 1 December 2026 at 9:00am."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return f"{long_date(moment.date())} at {clock(moment)}"


def pct(value: float | int | None) -> str:
    """93.5%; a rate not yet measurable (no possible sessions) says so."""
    if value is None:
        return "not yet measured"
    text = f"{value:.1f}"
    return f"{text.removesuffix('.0')}%"


def days(value: float | int) -> str:
    """School days in words: '1 day', '½ day', '4½ days'."""
    whole, half = int(value), (value * 2) % 2 == 1
    text = (str(whole) if whole else "") + ("½" if half else "")
    text = text or "0"
    return f"{text} day" if value in (0.5, 1) else f"{text} days"


def ordinal(value: int) -> str:
    """1st, 2nd, 3rd, 4th, 11th, 21st."""
    value = int(value)
    suffix = "th" if 10 <= value % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(value % 10, "th")
    return f"{value}{suffix}"


def sessions(value: int) -> str:
    return f"{value} session" if value == 1 else f"{value} sessions"


def money(value: int | float) -> str:
    """£160; pence only when there are some."""
    return f"£{value:,.0f}" if float(value).is_integer() else f"£{value:,.2f}"


def upper_first(value: str) -> str:
    """Capitalise the first letter only (Jinja's `capitalize` lowers the rest)."""
    return value[:1].upper() + value[1:]


def css_string(value: str) -> Markup:
    """A quoted CSS string (for page footers): HTML escaping does not apply inside <style>."""
    text = re.sub(r"[^\w \-.,'&()/]", "", str(value))
    return Markup('"' + text + '"')


def join_words(items: list[str], last: str = "and") -> str:
    """'a', 'a and b', 'a, b and c'."""
    items = [str(i) for i in items]
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} {last} {items[-1]}"


FILTERS = {
    "long_date": long_date,
    "short_date": short_date,
    "clock": clock,
    "long_datetime": long_datetime,
    "pct": pct,
    "days": days,
    "sessions": sessions,
    "ordinal": ordinal,
    "money": money,
    "join_words": join_words,
    "css_string": css_string,
    "upper_first": upper_first,
}


def _environment(loader: BaseLoader) -> Environment:
    env = Environment(
        loader=loader,
        undefined=StrictUndefined,
        autoescape=select_autoescape(["html"], default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        extensions=["jinja2.ext.do"],
    )
    env.filters.update(FILTERS)
    return env


# --------------------------------------------------------------------------- templates


SUFFIXES = (".html", ".txt")  # a letter or document; a text message


def template_file(name: str, language: str = DEFAULT_LANGUAGE) -> str:
    """The file of a template: `<name>.html`, or `<name>.txt` for a text message."""
    for folder in dict.fromkeys((language, DEFAULT_LANGUAGE)):
        for suffix in SUFFIXES:
            if (TEMPLATES / folder / f"{name}{suffix}").is_file():
                return f"{name}{suffix}"
    return f"{name}.html"


def languages() -> list[str]:
    return sorted(p.name for p in TEMPLATES.iterdir() if p.is_dir())


def template_names(language: str = DEFAULT_LANGUAGE) -> list[str]:
    """Every letter and text message template of a language set (layout and shared parts
    excluded)."""
    root = TEMPLATES / language
    return sorted(
        str(p.relative_to(root).with_suffix(""))
        for p in root.rglob("*")
        if p.suffix in SUFFIXES and not p.name.startswith("_") and p.name != "base.html"
    )


def has_template(name: str, language: str = DEFAULT_LANGUAGE) -> bool:
    return any((TEMPLATES / language / f"{name}{suffix}").is_file() for suffix in SUFFIXES)


@lru_cache
def environment(language: str) -> Environment:
    """The language's templates, falling back to English for the shared layout and parts
    a language set has not translated."""
    loaders = [FileSystemLoader(TEMPLATES / language)]
    if language != DEFAULT_LANGUAGE:
        loaders.append(FileSystemLoader(TEMPLATES / DEFAULT_LANGUAGE))
    return _environment(ChoiceLoader(loaders))


def _sources(env: Environment, name: str, language: str) -> dict[str, str]:
    """The template and everything it extends, includes or imports, by file name."""
    found: dict[str, str] = {}
    pending = [template_file(name, language)]
    while pending:
        file = pending.pop()
        if file in found:
            continue
        source, _, _ = env.loader.get_source(env, file)
        found[file] = source
        pending.extend(ref for ref in meta.find_referenced_templates(env.parse(source)) if ref)
    return dict(sorted(found.items()))


@dataclass(frozen=True)
class TemplateVersion:
    name: str
    language: str
    version: str  # SHA-256 of the sources
    sources: dict[str, str]


@lru_cache(maxsize=1024)
def template_version(name: str, language: str = DEFAULT_LANGUAGE) -> TemplateVersion:
    """The version of a template as it is on disk now. Cached: templates are deployed
    with the code, not edited under a running worker."""
    if not has_template(name, language):
        raise TemplateNotFound(template_file(name, language))
    sources = _sources(environment(language), name, language)
    digest = hashlib.sha256(json.dumps(sources, sort_keys=True).encode()).hexdigest()
    return TemplateVersion(name=name, language=language, version=digest, sources=sources)


def resolve_language(name: str, wanted: str | None) -> str:
    """The language a letter is written in: the one asked for if its set has this letter,
    else English."""
    if wanted and wanted != DEFAULT_LANGUAGE and has_template(name, wanted):
        return wanted
    return DEFAULT_LANGUAGE


def render(name: str, context: Mapping[str, Any], language: str = DEFAULT_LANGUAGE) -> str:
    return environment(language).get_template(template_file(name, language)).render(context)


def is_text_message(name: str, language: str = DEFAULT_LANGUAGE) -> bool:
    return template_file(name, language).endswith(".txt")


def _block_text(env: Environment, name: str, context: Mapping[str, Any], language: str) -> str:
    template = env.get_template(template_file(name, language))
    block = template.blocks.get("subject") or template.blocks.get("title")
    if block is None:
        return ""
    text = "".join(block(template.new_context(dict(context))))
    return html_lib.unescape(re.sub(r"\s+", " ", text)).strip()


def render_subject(name: str, context: Mapping[str, Any], language: str = DEFAULT_LANGUAGE) -> str:
    """The email subject: the template's `subject` block, else its `title`."""
    return _block_text(environment(language), name, context, language)


def render_text_message(
    name: str, context: Mapping[str, Any], language: str = DEFAULT_LANGUAGE
) -> str:
    """A text message (a `.txt` template, such as a policy's `text_message`), one line."""
    return one_line(environment(language).get_template(f"{name}.txt").render(context))


def one_line(text: str) -> str:
    """A text message as sent: one line, single spaces."""
    return html_lib.unescape(re.sub(r"\s+", " ", text)).strip()


def render_string(source: str, context: Mapping[str, Any]) -> str:
    """A one-line template, such as an email subject (plain text, not escaped)."""
    env = _environment(DictLoader({}))
    env.autoescape = False
    return env.from_string(source).render(context).strip()


def render_from_sources(sources: Mapping[str, str], name: str, context: Mapping[str, Any]) -> str:
    """Render a letter again from the template sources stored with it, whatever the
    templates on disk say today."""
    file = next((f"{name}{x}" for x in SUFFIXES if f"{name}{x}" in sources), f"{name}.html")
    return _environment(DictLoader(dict(sources))).get_template(file).render(context)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# --------------------------------------------------------------------------- copies


def address_copy(letter_html: str, *, name: str, address_lines: list[str], salutation: str) -> str:
    """One recipient's copy: the letter with their address block and salutation."""
    lines = [html_lib.escape(line) for line in [name, *address_lines] if line]
    if RECIPIENT_LINES in letter_html:
        letter_html = letter_html.replace(RECIPIENT_LINES, NEWLINE.join(lines), 1)
    else:
        letter_html = letter_html.replace(RECIPIENT, "<br>".join(lines), 1)
    return letter_html.replace(SALUTATION, html_lib.escape(salutation), 1)


def body_of(letter_html: str) -> str:
    """The inside of a letter's <body>, for copies of letters bound into another document."""
    match = re.search(r"<body[^>]*>(.*)</body>", letter_html, re.S)
    return match.group(1) if match else letter_html


# HTML to plain text for an email's text part: paragraphs, lines, lists and tables. The
# letters are our own templates with every value escaped, so tags are found by pattern.
_TOKENS = re.compile(
    r"<!--.*?-->|<![^>]*>|<(/?)([a-zA-Z][a-zA-Z0-9]*)(?:\s[^>]*)?/?>|([^<]+)|<", re.S
)
_BLOCK = {"p", "div", "h1", "h2", "h3", "h4", "ul", "ol", "table", "section", "header"}
_HIDDEN = {"style", "head", "title"}
_SPACES = re.compile(r"\s+")
_BLANK_LINES = re.compile(r"\n{3,}")


def html_to_text(letter_html: str) -> str:
    out: list[str] = []
    hidden = 0
    for token in _TOKENS.finditer(letter_html):
        closing, tag, data = token.groups()
        if tag:
            tag = tag.lower()
            if tag in _HIDDEN:
                hidden += -1 if closing else 1
            elif tag in _BLOCK:
                out.append("\n\n")
            elif closing:
                continue
            elif tag in ("br", "tr"):
                out.append("\n")
            elif tag == "li":
                out.append("\n  - ")
            elif tag in ("td", "th"):
                out.append("  ")
        elif not hidden and not token.group().startswith("<!"):
            parts = (data or token.group()).split(NEWLINE)
            out.append("\n".join(_SPACES.sub(" ", html_lib.unescape(p)) for p in parts))
    lines = [line.strip() for line in "".join(out).splitlines()]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip() + "\n"
