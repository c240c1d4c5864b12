"""docs/deployment.md's configuration table is the settings object, checked both ways.

Every field of ``core.settings.Settings`` is listed by every environment variable that sets it, nothing
else is listed, each listed variable really sets its field (read back through ``Settings()``), and the
default column states the field's default.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, get_args

import pytest
from pydantic import AliasChoices
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "deployment.md"
TABLE_HEADING = "## Configuration: environment variables"
UNSET = "–"  # the default column of a setting that is unset by default


def env_names(name: str, field: FieldInfo) -> list[str]:
    """The environment variables pydantic-settings reads for a field (aliases replace the prefix)."""
    alias = field.validation_alias
    if alias is None:
        return [f"{Settings.model_config['env_prefix']}{name}".upper()]
    if isinstance(alias, str):
        return [alias.upper()]
    assert isinstance(alias, AliasChoices), f"{name}: unexpected alias {alias!r}"
    return [str(c).upper() for c in alias.choices]


def default_of(field: FieldInfo) -> Any:
    if field.default is not PydanticUndefined:
        return field.default
    return field.default_factory() if field.default_factory else None  # type: ignore[call-arg]


def table_rows() -> list[tuple[list[str], str, str]]:
    """(variables, default cell, meaning cell) of each row of the table under TABLE_HEADING."""
    text = DOC.read_text()
    assert TABLE_HEADING in text, f"{DOC.name} has no section {TABLE_HEADING!r}"
    section = text.split(TABLE_HEADING, 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        if not line.startswith("|") or set(line) <= set("|- "):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0].lower() == "variable":
            continue
        assert len(cells) == 3, f"a row needs 3 cells (variable | default | meaning): {line}"
        rows.append((re.findall(r"`([^`]+)`", cells[0]), cells[1], cells[2]))
    assert rows, "the configuration table is empty"
    return rows


def _field_of_env() -> dict[str, str]:
    return {env: name for name, f in Settings.model_fields.items() for env in env_names(name, f)}


def test_table_lists_every_setting_and_nothing_else() -> None:
    listed = [v for names, _, _ in table_rows() for v in names]
    dupes = sorted({v for v in listed if listed.count(v) > 1})
    assert not dupes, f"listed twice: {dupes}"
    known = _field_of_env()
    missing = sorted(set(known) - set(listed))
    unknown = sorted(set(listed) - set(known))
    assert not missing, f"settings missing from {DOC.name}: {missing}"
    assert not unknown, f"{DOC.name} lists variables that are no setting: {unknown}"


def test_each_row_is_one_setting_with_its_default() -> None:
    known = _field_of_env()
    for names, default_cell, meaning in table_rows():
        fields = {known[n] for n in names}
        assert len(fields) == 1, f"one row per setting, this one mixes {sorted(fields)}"
        (name,) = fields
        assert meaning, f"{name}: empty meaning"
        default = default_of(Settings.model_fields[name])
        if default in (None, "", []):
            assert default_cell.startswith(UNSET), f"{name} is unset by default; its default cell should say {UNSET!r}"
            continue
        shown = re.match(r"`([^`]+)`", default_cell)
        assert shown, f"{name}: the default cell should start with the default in backticks, got {default_cell!r}"
        value = shown.group(1)
        if isinstance(default, bool):
            assert value.lower() == str(default).lower(), f"{name}: default {default}, doc says {value}"
        elif isinstance(default, int | float):
            assert float(value) == float(default), f"{name}: default {default}, doc says {value}"
        elif isinstance(default, Path):
            assert Path(value) == default, f"{name}: default {default}, doc says {value}"
        else:
            assert value == str(default), f"{name}: default {default!r}, doc says {value!r}"


# A value each setting accepts that differs from its default (fields with constraints beyond their type).
SAMPLES: dict[str, tuple[str, Any]] = {
    "environment": ("test", "test"),
    "default_variant": ("b1", "b1"),
    "worker_queues": ("gpu,cpu", ["gpu", "cpu"]),
    "job_queue": ("cpu", "cpu"),
}


def _sample(name: str, field: FieldInfo) -> tuple[str, Any]:
    if name in SAMPLES:
        return SAMPLES[name]
    default = default_of(field)
    types = set(get_args(field.annotation)) or {field.annotation}
    if isinstance(default, bool):
        return str(not default).lower(), not default
    if isinstance(default, int | float):
        return str(default + 1), default + 1
    if Path in types:
        return "/srv/sasformer-x", Path("/srv/sasformer-x")
    if list[str] in types or field.annotation == list[str]:
        return "a-0123456789abcdef,b-0123456789abcdef", ["a-0123456789abcdef", "b-0123456789abcdef"]
    return "sample-value", "sample-value"


@pytest.mark.parametrize("env", sorted(_field_of_env()))
def test_each_variable_sets_its_setting(env: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The variable names in the table are the ones the settings object reads (not just similar names)."""
    monkeypatch.chdir(tmp_path)  # no .env of the checkout
    for var in _field_of_env():
        monkeypatch.delenv(var, raising=False)
    name = _field_of_env()[env]
    raw, expected = _sample(name, Settings.model_fields[name])
    monkeypatch.setenv(env, raw)
    assert getattr(Settings(), name) == expected
