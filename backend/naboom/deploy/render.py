"""Fill `${NAME}` placeholders in deployment templates.

Only the braced form is substituted: nginx and shell snippets in the same templates use
bare `$host`, `$remote_addr`, `$1`, which must pass through untouched, so neither
`string.Template` nor `os.path.expandvars` fits.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["MissingTemplateValue", "placeholders", "render_template"]

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class MissingTemplateValue(KeyError):
    """A template names a placeholder that the caller gave no value for."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(names)
        self.names = names

    def __str__(self) -> str:
        return "template placeholders without a value: " + ", ".join("${" + n + "}" for n in self.names)


def placeholders(text: str) -> set[str]:
    """Names of every `${NAME}` placeholder in `text`."""
    return set(_PLACEHOLDER.findall(text))


def render_template(text: str, values: Mapping[str, str]) -> str:
    """Return `text` with each `${NAME}` replaced by `values[NAME]`; every other `$` is kept."""
    missing = sorted(placeholders(text) - set(values))
    if missing:
        raise MissingTemplateValue(missing)
    return _PLACEHOLDER.sub(lambda match: str(values[match.group(1)]), text)
