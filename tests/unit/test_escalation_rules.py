"""Escalation rule checks and SMS templates, without a database."""

from __future__ import annotations

import pytest

from naboom.escalation.schemas import EscalationLevel
from naboom.escalation.service import InvalidRuleError, check_levels
from naboom.escalation.templates import PLACEHOLDERS, TemplateError, check_template, render


def _level(minutes: int = 5, targets: list[str] | None = None, template: str = "Incident {incident}") -> EscalationLevel:
    return EscalationLevel(threshold_minutes=minutes, targets=targets or ["+27821234567"], template=template)


def test_a_template_may_use_every_known_placeholder_and_escaped_braces() -> None:
    template = " ".join(f"{{{name}}}" for name in PLACEHOLDERS) + " {{literal}}"
    check_template(template)
    rendered = render(template, {name: name.upper() for name in PLACEHOLDERS})
    assert rendered == " ".join(name.upper() for name in PLACEHOLDERS) + " {literal}"


@pytest.mark.parametrize(
    ("template", "says"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("x" * 481, "at most 480"),
        ("Call {boss} now", "unknown placeholder {boss}"),
        ("Incident {}", "unknown placeholder {}"),
        ("Incident {0}", "unknown placeholder {0}"),
        ("Incident {incident.int}", "unknown placeholder {incident.int}"),
        ("Incident {incident!r}", "no conversion or format"),
        ("Incident {incident:>40}", "no conversion or format"),
        ("Incident {incident", "braces do not balance"),
        ("Incident } here", "braces do not balance"),
        ("a\x00b", "NUL"),
    ],
    ids=["empty", "blank", "long", "unknown", "positional", "index", "attribute", "conversion", "format",
         "open-brace", "close-brace", "nul"],
)
def test_a_template_that_cannot_render_safely_is_refused_saying_why(template: str, says: str) -> None:
    with pytest.raises(TemplateError) as refused:
        check_template(template)
    assert says in str(refused.value)


def test_a_480_character_template_is_accepted() -> None:
    check_template("x" * 480)


def test_levels_with_rising_thresholds_and_e164_targets_are_accepted() -> None:
    check_levels([_level(5, ["+27821234567", "+4420712345"]), _level(10), _level(15, ["+123456789012345"])])


@pytest.mark.parametrize(
    ("levels", "says"),
    [
        ([], "at least one level"),
        ([_level(0)], "level 1: threshold_minutes must be 1 to 10080"),
        ([_level(-5)], "level 1: threshold_minutes must be 1 to 10080"),
        ([_level(10081)], "level 1: threshold_minutes must be 1 to 10080"),
        ([_level(10), _level(10)], "level 2: threshold_minutes 10 must be greater than level 1's 10"),
        ([_level(10), _level(5)], "level 2: threshold_minutes 5 must be greater than level 1's 10"),
        ([_level(5, ["0821234567"])], "level 1: target '0821234567' is not an E.164"),
        ([_level(5, ["+27 82 123 4567"])], "is not an E.164"),
        ([_level(5, ["+1234567"])], "is not an E.164"),  # 7 digits
        ([_level(5, ["+1234567890123456"])], "is not an E.164"),  # 16 digits
        ([_level(5, ["+0821234567"])], "is not an E.164"),  # no country code starts with 0
        ([_level(5, ["+٢٧٨٢١٢٣٤٥٦٧"])], "is not an E.164"),  # digits, but not ASCII ones
        ([_level(5, ["+27821234567", "+27821234567"])], "listed twice"),
        ([_level(5), _level(9, template="Hi {name}")], "level 2: unknown placeholder {name}"),
        ([_level(5, template="")], "level 1: the template is empty"),
        ([_level(m) for m in range(1, 12)], "at most 10 levels"),
        ([_level(5, [f"+2782123{n:04d}" for n in range(51)])], "at most 50 targets"),
    ],
    ids=["none", "zero", "negative", "over-a-week", "equal", "falling", "national", "spaces", "short", "long",
         "zero-country", "arabic-digits", "duplicate", "placeholder", "empty-template", "too-many-levels",
         "too-many-targets"],
)
def test_levels_that_cannot_work_are_refused_naming_the_level_and_the_problem(
    levels: list[EscalationLevel], says: str
) -> None:
    with pytest.raises(InvalidRuleError) as refused:
        check_levels(levels)
    assert says in refused.value.detail
    assert refused.value.status_code == 422


def test_a_level_with_no_targets_is_refused() -> None:
    with pytest.raises(InvalidRuleError, match="level 1: targets is empty"):
        check_levels([EscalationLevel(threshold_minutes=5, targets=[], template="x")])
