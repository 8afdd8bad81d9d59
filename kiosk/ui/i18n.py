"""Translation tables: every string the screens show, in Japanese and English.

Tables live in ``kiosk/ui/strings/<name>.toml`` (``common.toml`` is shared, each app adds its own, e.g.
``counter.toml`` and ``office.toml``). A string is a table with one key per language::

    [start]
    title = { ja = "ご相談窓口", en = "Consultation counter" }

and is addressed by its dotted key (``"start.title"``). Values may contain ``{name}`` fields filled by
:meth:`StringTable.get`. Pure: no Kivy.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["LANGUAGES", "StringTable", "TranslationError", "load_strings", "STRINGS_DIR"]

LANGUAGES: tuple[str, ...] = ("ja", "en")
STRINGS_DIR = Path(__file__).with_name("strings")


class TranslationError(Exception):
    """A table is malformed (missing language, duplicate key) or a key does not exist."""


@dataclass(frozen=True)
class StringTable:
    """Translated strings by dotted key; ``entries[key][lang]`` is the text."""

    entries: Mapping[str, Mapping[str, str]]

    def get(self, key: str, lang: str, /, **fields: Any) -> str:
        """The text for ``key`` in ``lang``, with ``{field}`` placeholders filled from ``fields``.

        Raises:
            TranslationError: unknown key or language, or a placeholder without a value.
        """
        try:
            text = self.entries[key][lang]
        except KeyError:
            if key not in self.entries:
                raise TranslationError(f"no string {key!r} in the translation tables") from None
            raise TranslationError(f"string {key!r} has no {lang!r} text") from None
        if not fields:
            return text
        try:
            return text.format(**fields)
        except (KeyError, IndexError) as err:
            raise TranslationError(f"string {key!r} ({lang}) needs field {err}") from err

    def __contains__(self, key: object) -> bool:
        return key in self.entries

    def keys(self) -> Iterator[str]:
        return iter(self.entries)

    def texts(self, lang: str | None = None) -> Iterator[str]:
        """Every text (of one language, or of all)."""
        for per_lang in self.entries.values():
            for code, text in per_lang.items():
                if lang is None or code == lang:
                    yield text


def _flatten(data: Mapping[str, Any], prefix: str, source: str, out: dict[str, dict[str, str]]) -> None:
    for name, value in data.items():
        key = f"{prefix}{name}"
        if not isinstance(value, Mapping):
            raise TranslationError(f"{source}: {key!r} must be a table of languages, found {value!r}")
        if any(lang in value for lang in LANGUAGES):
            missing = [lang for lang in LANGUAGES if not isinstance(value.get(lang), str)]
            extra = [k for k in value if k not in LANGUAGES]
            if missing or extra:
                raise TranslationError(
                    f"{source}: {key!r} needs exactly {LANGUAGES} as strings "
                    f"(missing {missing}, unexpected {extra})"
                )
            if key in out:
                raise TranslationError(f"{source}: {key!r} is already defined in another table")
            out[key] = dict(value)
        else:
            _flatten(value, key + ".", source, out)


def load_strings(*names: str, directory: Path = STRINGS_DIR) -> StringTable:
    """Load and merge ``<directory>/<name>.toml`` for each name (e.g. ``"common", "counter"``).

    Raises:
        TranslationError: a file is missing or malformed, or two files define the same key.
    """
    out: dict[str, dict[str, str]] = {}
    for name in names:
        path = directory / f"{name}.toml"
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as err:
            raise TranslationError(f"{path}: {err}") from err
        _flatten(data, "", str(path), out)
    return StringTable(out)
