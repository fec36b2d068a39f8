"""docs/operations.md lists every setting of every service, as the code declares it.

The settings table is generated from the pydantic settings classes (shared/settings.py and each
services/<name>/config.py) and kept between two markers in the document; the test fails when the
document's table differs from what the code declares now (a setting added, renamed, or its
default or description changed). Regenerate it with

    .venv/bin/python -m tests.unit.test_operations_doc
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from shared.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "operations.md"
BEGIN, END = "<!-- settings:begin -->", "<!-- settings:end -->"


def settings_classes() -> dict[str, type[ServiceSettings]]:
    """The shared base, then each service's class, found by convention (services/<name>/config.py),
    so a service added later is listed without editing this."""
    found: dict[str, type[ServiceSettings]] = {"every service (`shared/settings.py`)": ServiceSettings}
    for config in sorted((ROOT / "services").glob("*/config.py")):
        module = importlib.import_module(f"services.{config.parent.name}.config")
        for cls in vars(module).values():
            if inspect.isclass(cls) and issubclass(cls, ServiceSettings) and cls.__module__ == module.__name__:
                found[f"{config.parent.name} (`services/{config.parent.name}/config.py`)"] = cls
    return found


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        made = field.default_factory
        if made in (dict, list):
            return f"`{made()!r}`".replace("'", '"')
        return f"computed (`{made.__name__}()`)"
    value = field.default
    if value is PydanticUndefined:
        return "**required**"
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        return f"`{int(value)}`"
    return f"`{value}`" if value != "" else "empty"


def _own_fields(cls: type[ServiceSettings]) -> dict[str, FieldInfo]:
    """A service's own settings, and those of the base whose default it changes."""
    if cls is ServiceSettings:
        return dict(cls.model_fields)
    base = ServiceSettings.model_fields
    return {name: field for name, field in cls.model_fields.items()
            if name not in base or _default(field) != _default(base[name])}


def _cell(text: Any) -> str:
    # Escaped for Markdown: a bare <instance> would be taken for an HTML tag and vanish.
    return " ".join(str(text or "").split()).replace("|", "\\|").replace("<", "\\<").replace(">", "\\>")


def settings_table() -> str:
    lines = []
    for title, cls in settings_classes().items():
        lines += [f"#### {title}", "", "| variable | default | meaning |", "|---|---|---|"]
        for name, field in _own_fields(cls).items():
            lines.append(f"| `{name.upper()}` | {_default(field)} | {_cell(field.description)} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def documented_table(text: str) -> str:
    assert BEGIN in text and END in text, f"docs/operations.md lacks the markers {BEGIN} … {END}"
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n") + "\n"


def test_every_setting_of_every_service_is_in_the_operations_guide():
    doc = DOC.read_text(encoding="utf-8")
    missing = [f"{name.upper()} ({title})" for title, cls in settings_classes().items()
               for name in _own_fields(cls) if f"`{name.upper()}`" not in documented_table(doc)]
    assert not missing, f"settings missing from docs/operations.md: {missing}; run `.venv/bin/python -m tests.unit.test_operations_doc`"


def test_the_settings_table_says_what_the_code_declares_now():
    assert documented_table(DOC.read_text(encoding="utf-8")) == settings_table(), (
        "docs/operations.md's settings table is stale: run `.venv/bin/python -m tests.unit.test_operations_doc`")


def test_every_service_with_settings_has_a_section():
    services = {p.parent.name for p in (ROOT / "services").glob("*/config.py")}
    titles = " ".join(settings_classes())
    assert all(f"services/{name}/config.py" in titles for name in services)


if __name__ == "__main__":
    text = DOC.read_text(encoding="utf-8")
    head, rest = text.split(BEGIN, 1)
    DOC.write_text(f"{head}{BEGIN}\n{settings_table()}{END}{rest.split(END, 1)[1]}", encoding="utf-8")
    print(f"settings table written to {DOC.relative_to(ROOT)}")
