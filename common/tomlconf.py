"""Reading TOML config files with errors that name the file, the line and the key.

``tomllib`` reports syntax errors with a line number but forgets positions once parsed, so
:class:`ConfigFile` keeps the text and finds the line of a table or key again when it has to
complain about a value. Used by the relay's config and every terminal's config.
"""

from __future__ import annotations

import contextvars
import difflib
import functools
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

T = TypeVar("T")
P = ParamSpec("P")

# While set, files loaded by :func:`load` are read leniently to find stray keys (see reporting_stray_keys).
_PROBE: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("tomlconf_probe", default=None)

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"""^\s*("[^"]*"|'[^']*'|[A-Za-z0-9_\-.]+)\s*=""")


class ConfigError(Exception):
    """A config file is missing, unreadable, or has a wrong, missing or unknown value."""


class ConfigFileNotFound(ConfigError):
    """The config file does not exist."""


class ConfigSyntaxError(ConfigError):
    """The file is not valid TOML."""


class MissingKeyError(ConfigError):
    """A required key or table is missing."""


class UnknownKeyError(ConfigError):
    """A key that nothing reads (usually a misspelling)."""


def _norm_key(raw: str) -> str:
    return ".".join(p.strip().strip("\"'") for p in raw.split("."))


class ConfigFile:
    """A parsed TOML file that can point at the line of any table or key."""

    def __init__(self, path: str | Path, text: str | None = None) -> None:
        self.path = Path(path)
        # Lenient mode: missing or wrong values read as placeholders, unknown keys collected here.
        self.strays: list[str] | None = _PROBE.get()
        if text is None:
            try:
                text = self.path.read_text(encoding="utf-8")
            except FileNotFoundError as err:
                raise ConfigFileNotFound(f"{self.path}: config file not found") from err
            except (OSError, UnicodeDecodeError) as err:
                raise ConfigError(f"{self.path}: cannot read config file: {err}") from err
        self.text = text
        try:
            self.data: dict[str, Any] = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            # Python 3.11's TOMLDecodeError only carries the position inside its message.
            m = re.search(r"\(at line (\d+), column (\d+)\)", str(err))
            where = f"{self.path}:{m.group(1)}" if m else str(self.path)
            problem = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(err))
            col = f" (column {m.group(2)})" if m else ""
            raise ConfigSyntaxError(f"{where}: TOML syntax error: {problem}{col}") from err
        self._index = self._index_lines(text)

    @staticmethod
    def _index_lines(text: str) -> dict[str, int]:
        """Map 'table.key' paths (arrays of tables as 'name[i]') to 1-based line numbers."""
        index: dict[str, int] = {}
        counts: dict[str, int] = {}
        table = ""
        for n, line in enumerate(text.splitlines(), 1):
            m = _HEADER.match(line)
            if m:
                name = _norm_key(m.group(2))
                if m.group(1) == "[[":
                    i = counts.get(name, 0)
                    counts[name] = i + 1
                    table = f"{name}[{i}]"
                else:
                    # A sub-table of the latest array element: 'a.b' after '[[a]]' lives in 'a[i].b'.
                    parent = name.split(".")[0]
                    table = (
                        f"{parent}[{counts[parent] - 1}]{name[len(parent) :]}" if parent in counts else name
                    )
                index.setdefault(table, n)
                continue
            k = _KEY.match(line)
            if k:
                key = _norm_key(k.group(1))
                index.setdefault(f"{table}.{key}" if table else key, n)
        return index

    def where(self, path: str) -> str:
        """``file:line`` for a dotted key path, falling back to its closest known parent."""
        probe = path
        while probe:
            if probe in self._index:
                return f"{self.path}:{self._index[probe]}"
            probe = probe.rsplit(".", 1)[0] if "." in probe else ""
        return str(self.path)

    def error(self, path: str, problem: str, kind: type[ConfigError] = ConfigError) -> ConfigError:
        """An error for key ``path`` (e.g. ``'department[2].hours'``), located in the file."""
        return kind(f"{self.where(path)}: {path}: {problem}")


class Section:
    """Typed, located access to one table of a :class:`ConfigFile`; checks for unknown keys."""

    def __init__(self, file: ConfigFile, path: str, data: Mapping[str, Any] | None) -> None:
        self.file = file
        self.path = path
        self.data: Mapping[str, Any] = data if data is not None else {}
        if not isinstance(self.data, Mapping):
            raise file.error(path, f"must be a table, got {type(self.data).__name__}")
        self._used: set[str] = set()

    def key_path(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, problem: str, kind: type[ConfigError] = ConfigError) -> ConfigError:
        return self.file.error(self.key_path(key), problem, kind)

    def has(self, key: str) -> bool:
        return key in self.data

    def get(
        self,
        key: str,
        kind: type[T] | tuple[type, ...],
        default: Any = ...,
        *,
        check: Callable[[Any], str | None] | None = None,
    ) -> Any:
        """The value of ``key`` checked against ``kind``; missing and no default is an error.

        ``check`` returns a problem description, or None when the value is fine.
        """
        self._used.add(key)
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if key not in self.data:
            if default is ...:
                if self.file.strays is not None:
                    return kinds[0]()
                raise self.error(key, "required key is missing" + self._misspelt(key), MissingKeyError)
            return default
        value = self.data[key]
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if self.file.strays is not None:  # probing for stray keys: read on whatever the value is
            return value if isinstance(value, kinds) else (default if default is not ... else kinds[0]())
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            names = " or ".join(_toml_type(k) for k in kinds)
            raise self.error(key, f"expected {names}, found {_toml_type(type(value))} {value!r}")
        if check is not None:
            problem = check(value)
            if problem:
                raise self.error(key, problem)
        return value

    def _misspelt(self, key: str) -> str:
        """For a missing key: the key of this table that is probably it, misspelt (`tokn` for `token`)."""
        candidates = [k for k in self.data if k not in self._used]
        hint = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
        if not hint:
            return ""
        return f"; unknown key '{hint[0]}' at {self.file.where(self.key_path(hint[0]))} (a misspelling of '{key}'?)"

    def get_list(self, key: str, item: type, default: Any = ...) -> list[Any]:
        values = self.get(key, list, default)
        for i, v in enumerate(values):
            if not isinstance(v, item) or isinstance(v, bool) and item is not bool:
                raise self.error(key, f"item {i + 1} must be {_toml_type(item)}, found {v!r}")
        return list(values)

    def section(self, key: str, required: bool = False) -> Section:
        self._used.add(key)
        if key not in self.data and required and self.file.strays is None:
            raise self.error(key, "required table is missing" + self._misspelt(key), MissingKeyError)
        return Section(self.file, self.key_path(key), self.data.get(key, {}))

    def sections(self, key: str) -> list[Section]:
        """An array of tables (``[[key]]``)."""
        self._used.add(key)
        items = self.data.get(key, [])
        if not isinstance(items, list):
            raise self.error(key, "expected an array of tables ([[" + key + "]])")
        return [Section(self.file, f"{self.key_path(key)}[{i}]", item) for i, item in enumerate(items)]

    def done(self, extra_allowed: Iterable[str] = ()) -> None:
        """Raise for any key that was never read: a typo must not be silently ignored."""
        allowed = self._used | set(extra_allowed)
        for key in self.data:
            if key not in allowed and self.file.strays is not None:
                self.file.strays.append(f"unknown key '{key}' at {self.file.where(self.key_path(key))}")
            elif key not in allowed:
                hint = difflib.get_close_matches(key, sorted(allowed), n=1)
                tip = f" (did you mean '{hint[0]}'?)" if hint else ""
                known = ", ".join(sorted(allowed)) or "none"
                raise self.error(key, f"unknown key{tip}; known keys here: {known}", UnknownKeyError)


def _toml_type(t: type) -> str:
    return {
        str: "string",
        int: "integer",
        float: "number",
        bool: "boolean",
        list: "array",
        dict: "table",
    }.get(t, t.__name__)


def reporting_stray_keys(loader: Callable[P, T]) -> Callable[P, T]:
    """Wrap a config loader so that a missing required key is reported together with every unknown key.

    A loader stops at the first missing key, before the tables it has not read yet could name their
    unknown keys; a technician who typed ``tokn = "…"`` must see both problems at once. On a missing
    key the loader runs once more in a lenient mode (placeholders for missing or wrong values), in
    which each table's :meth:`Section.done` collects its unknown keys instead of raising.
    """

    @functools.wraps(loader)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return loader(*args, **kwargs)
        except MissingKeyError as err:
            strays: list[str] = []
            token = _PROBE.set(strays)
            try:
                loader(*args, **kwargs)
            except Exception:  # the lenient run only collects what it reaches
                pass
            finally:
                _PROBE.reset(token)
            extra = [s for s in dict.fromkeys(strays) if s.split(" at ")[0] not in str(err)]
            if not extra:
                raise
            raise MissingKeyError(f"{err}; also {'; '.join(extra)}") from err

    return wrapper


def load(path: str | Path) -> tuple[ConfigFile, Section]:
    """Parse ``path`` and return the file and its root section."""
    file = ConfigFile(path)
    return file, Section(file, "", file.data)
