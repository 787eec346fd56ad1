"""Escalation SMS templates: ``str.format`` fields, only known names, checked when a rule is saved."""

from __future__ import annotations

import string
from collections.abc import Mapping

PLACEHOLDERS: Mapping[str, str] = {
    "incident": "the incident's short reference, as in the alert SMS (such as 3F2A9C1B)",
    "region": "the region's name",
    "message": "the device's message (such as SOS)",
    "minutes": "whole minutes since the incident was received",
    "level": "the level's number (1 is the first)",
    "rule": "the rule's name",
    "time": "when the incident was received, in the region's timezone (such as 25 Nov 14:05 SAST)",
    "place": "latitude,longitude, or 'location unknown'",
    "map": "a map link to the place, or 'location unknown'",
    "link": "the incident in the monitor",
}
MAX_TEMPLATE_CHARS = 480
_FORMATTER = string.Formatter()


class TemplateError(ValueError):
    """A template that could not be rendered safely; the message says why."""


def check_template(template: str) -> None:
    """Refuse empty or long templates, unknown placeholders, conversions and format specs."""
    if not template.strip():
        raise TemplateError("the template is empty")
    if len(template) > MAX_TEMPLATE_CHARS:
        raise TemplateError(f"the template has {len(template)} characters; at most {MAX_TEMPLATE_CHARS}")
    if "\x00" in template:
        raise TemplateError("the template must not contain a NUL character")
    try:
        fields = [(name, spec, conversion) for _, name, spec, conversion in _FORMATTER.parse(template) if name is not None]
    except ValueError as exc:
        raise TemplateError(f"the template's braces do not balance ({exc}); write {{{{ and }}}} for literal braces") from None
    known = ", ".join(f"{{{name}}}" for name in PLACEHOLDERS)
    for name, spec, conversion in fields:
        if name not in PLACEHOLDERS:
            shown = f"{{{name}}}" if name else "{}"
            raise TemplateError(f"unknown placeholder {shown}; use {known}")
        if spec or conversion:
            raise TemplateError(f"placeholder {{{name}}} takes no conversion or format (write it as {{{name}}})")


def render(template: str, values: Mapping[str, str]) -> str:
    """The template with every placeholder replaced (it was checked when the rule was saved)."""
    return template.format_map({name: values.get(name, "") for name in PLACEHOLDERS})
