"""The base model and the scalar types every stack model is built from.

Why custom scalar types: Compose files reach the models after interpolation, so a number or a
boolean may arrive as a string (``replicas: ${N}`` -> ``"3"``); Compose casts those, and so do
we. Our validators also write the error messages themselves
(``expected a non-negative integer, got "three"``): the wording talks about stack files, not
about Python types. The model machinery is :mod:`.core` (pydantic's spelling, a fraction of
its start-up cost).

The base :class:`Model`:

- rejects unknown keys, carrying a did-you-mean suggestion to the error mapping
  (:mod:`stackctl.spec.issues`);
- keeps ``x-*`` extension keys (where Compose allows them) and keys that stackctl accepts but
  does not carry out yet (see :mod:`.support`) beside the typed fields, so that ``config`` prints
  them again;
- prints itself (``dump``) as Compose-style plain data: no ``None`` values, no empty
  collections unless they mean something, extension keys last.
"""

import re
from collections.abc import Callable, Iterable
from typing import Annotated, Any, ClassVar

from stackctl.spec.models.core import (  # noqa: F401 (re-exported)
    BaseModel,
    BeforeValidator,
    ErrorItem,
    Invalid,
    PlainSerializer,
    PlainValidator,
    PrivateAttr,
)

from stackctl.spec import units
from stackctl.spec.models.core import _BAD, _invalid
from stackctl.spec.models.support import check_unsupported, unsupported_keys
from stackctl.spec.yamlpos import strip_positions

# --------------------------------------------------------------------------------------------
# Errors


def fail(message: str, *, at: str | tuple = "") -> Invalid:
    """An error with our own wording; the mapping prints ``message`` as it is.

    ``at`` names a key below the place being validated (``"replicas"`` for a check made on
    the whole ``deploy`` mapping), so the error points at that key.
    """
    return Invalid(message, at)


def describe(value: Any) -> str:
    """How an offending input is shown in a message: ``"three"``, ``12``, ``a mapping``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = value if len(value) <= 60 else value[:57] + "..."
        import json  # (only messages need it: not imported on every start)

        return json.dumps(text, ensure_ascii=False)
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return type(value).__name__


def suggest(word: str, choices: Iterable[str]) -> str | None:
    """The closest known key, if any is close enough (difflib)."""
    import difflib  # (only messages need it)

    found = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return found[0] if found else None


# --------------------------------------------------------------------------------------------
# Base model


class Model(BaseModel):
    """Base of every stack model (see the module docstring)."""

    #: area name in :mod:`.support`'s table of accepted-but-not-carried-out keys
    area: ClassVar[str] = ""
    #: whether ``x-*`` keys are allowed here: Compose's schema allows them in every mapping it
    #: defines (a port, a depends_on entry, a mount...), except a few (env_file entries)
    extensible: ClassVar[bool] = True
    #: keys printed even when their value is empty (``entrypoint: []`` means "none")
    keep_empty: ClassVar[frozenset[str]] = frozenset()
    #: boolean keys printed only when true (as ``docker compose config`` does)
    omit_false: ClassVar[frozenset[str]] = frozenset()

    _extensions: dict[str, Any] = PrivateAttr(default_factory=dict)
    _unsupported: dict[str, Any] = PrivateAttr(default_factory=dict)

    @classmethod
    def known_keys(cls) -> set[str]:
        keys = cls.__dict__.get("_known_")
        if keys is None:
            keys = frozenset(cls.field_names())
            cls._known_ = keys
        return set(keys)

    @classmethod
    def prepare(cls, data: dict[str, Any]) -> dict[str, Any]:
        """Hook: turn accepted shorthands into the long form (data is a fresh dict)."""
        return data

    @classmethod
    def _check(cls, data: Any, loc: tuple, errs: list) -> Any:
        if isinstance(data, cls):
            return data
        if not isinstance(data, dict):
            errs.append(ErrorItem(loc, "invalid", f"expected a mapping, got {describe(data)}"))
            return _BAD
        known = cls.__dict__.get("_known_") or cls.known_keys()
        ignored = unsupported_keys(cls.area)
        clean: dict[Any, Any] = {}
        extensions: dict[str, Any] = {}
        unsupported: dict[str, Any] = {}
        bad = False
        for key, value in data.items():
            name = key if isinstance(key, str) else str(key)
            if name in known:
                clean[name] = value
            elif cls.extensible and name.startswith("x-"):
                extensions[name] = strip_positions(value)
            elif name in ignored:
                try:
                    check_unsupported(cls.area, name, value)
                except Invalid as exc:
                    errs.append(_invalid(loc + (key,), exc))
                    bad = True
                unsupported[name] = strip_positions(value)
            else:
                errs.append(ErrorItem(loc + (key,), "unknown", "unknown key", value,
                                      suggest(name, known)))
                bad = True
        try:
            clean = cls.prepare(clean)
        except Invalid as exc:
            errs.append(_located(loc, exc))
            return _BAD
        instance = cls._fill(clean, loc, errs)
        if bad or instance is _BAD:
            return _BAD
        instance._extensions = extensions
        instance._unsupported = unsupported
        try:
            instance.finish(clean)
        except Invalid as exc:
            errs.append(_located(loc, exc))
            return _BAD
        return instance

    def finish(self, data: dict[str, Any]) -> None:
        """Hook: checks across fields, after validation (``data`` as given to the fields)."""

    @property
    def extensions(self) -> dict[str, Any]:
        """The ``x-*`` keys written here, as plain data."""
        return self._extensions

    @property
    def unsupported(self) -> dict[str, Any]:
        """Keys accepted here that stackctl does not carry out yet (their values as written)."""
        return self._unsupported

    def dump_plain(self) -> dict[str, Any]:
        out = {}
        for key, value in self.fields_plain().items():
            if value is None:
                continue
            if key not in self.keep_empty and isinstance(value, (dict, list)) and not value:
                continue
            if key in self.omit_false and value is False:
                continue
            out[key] = value
        out.update(self._unsupported)
        out.update(self._extensions)
        return out

    def dump(self) -> dict[str, Any]:
        """Plain data in Compose's long syntax (what ``stackctl config`` prints)."""
        return self.dump_plain()


def _located(loc: tuple, exc: Invalid) -> ErrorItem:
    return _invalid(loc, exc)


class TopLevel(Model):
    """What top-level networks, volumes, secrets and configs share (no fields of its own, so
    each keeps its key order): the old ``external: {name: N}`` form, read as ``external: true``
    and ``name: N``, and the keys an external one refuses."""

    @classmethod
    def prepare(cls, data: dict[str, Any]) -> dict[str, Any]:
        ext = data.get("external")
        if isinstance(ext, dict):
            data = dict(data)
            name = ext.get("name")
            if name is not None and "name" in data:
                raise fail(f'"name" and "external.name" cannot both be set; use "name" only '
                           "(external.name is the old spelling)", at="external")
            data["external"] = True
            if name is not None:
                data["name"] = name
        return data

    def refuse_when_external(self, data: dict[str, Any], keys: tuple[str, ...]) -> None:
        if getattr(self, "external", False):
            for key in keys:
                if key in data:
                    raise fail(f'an external {self.area} takes no "{key}": it exists already, '
                               "stackctl does not create it")


# --------------------------------------------------------------------------------------------
# Scalars
#
# Each is ``Annotated[T, PlainValidator(check)]``: ``check`` accepts what Compose accepts and
# raises our own message otherwise.

_TRUE = {"true", "yes", "y", "on"}
_FALSE = {"false", "no", "n", "off"}


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise fail(f"expected true or false, got {describe(value)}")


def _int_like(value: Any, what: str) -> int:
    if isinstance(value, bool) or value is None:
        raise fail(f"expected {what}, got {describe(value)}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*[-+]?[0-9]{1,30}\s*", value):
        return int(value)
    raise fail(f"expected {what}, got {describe(value)}")


def _int(value: Any) -> int:
    return _int_like(value, "an integer")


def _nonneg_int(value: Any) -> int:
    result = _int_like(value, "a non-negative integer")
    if result < 0:
        raise fail(f"expected a non-negative integer, got {describe(value)}")
    return result


def _pos_int(value: Any) -> int:
    result = _int_like(value, "a positive integer")
    if result < 1:
        raise fail(f"expected a positive integer, got {describe(value)}")
    return result


def _float(value: Any) -> float:
    if isinstance(value, bool) or value is None:
        raise fail(f"expected a number, got {describe(value)}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise fail(f"expected a number, got {describe(value)}")


def _ratio(value: Any) -> float:
    result = _float(value)
    if not 0 <= result <= 1:
        raise fail(f"expected a number between 0 and 1, got {describe(value)}")
    return result


def scalar_str(value: Any) -> str:
    """A string; numbers are taken as their text (``user: 1000``), as Compose casts them."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise fail(f"expected a string, got {describe(value)}")


def _nonempty_str(value: Any) -> str:
    result = scalar_str(value)
    if not result:
        raise fail("expected a non-empty string")
    return result


def value_str(value: Any) -> str:
    """A value of a label/option/sysctl map: any scalar, booleans as ``true``/``false``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return scalar_str(value)


def _file_mode(value: Any) -> int:
    """A file mode: an int (YAML reads 0440 as octal), or digits in a string read as octal, as
    chmod reads them ("1777", "0440")."""
    if isinstance(value, str) and value.strip().isdigit():
        try:
            return int(value.strip(), 8)
        except ValueError:
            raise fail(f"expected an octal file mode such as 0440, got {describe(value)}") from None
    return _nonneg_int(value)


Bool = Annotated[bool, PlainValidator(_bool)]
Int = Annotated[int, PlainValidator(_int)]
FileMode = Annotated[int, PlainValidator(_file_mode)]
NonNegInt = Annotated[int, PlainValidator(_nonneg_int)]
PosInt = Annotated[int, PlainValidator(_pos_int)]
Float = Annotated[float, PlainValidator(_float)]
Ratio = Annotated[float, PlainValidator(_ratio)]
Str = Annotated[str, PlainValidator(scalar_str)]
NonEmptyStr = Annotated[str, PlainValidator(_nonempty_str)]


def _duration(value: Any) -> int:
    try:
        return units.parse_duration(value)
    except ValueError as exc:
        raise fail(str(exc)) from None


def _bytes(value: Any) -> int:
    try:
        return units.parse_bytes(value)
    except ValueError as exc:
        raise fail(str(exc)) from None


def _cpus(value: Any) -> int:
    try:
        return units.parse_cpus(value)
    except ValueError as exc:
        raise fail(str(exc)) from None


#: nanoseconds; printed as Go prints durations (``1m30s``)
Duration = Annotated[int, PlainValidator(_duration), PlainSerializer(units.format_duration)]
#: bytes; printed as an integer
ByteSize = Annotated[int, PlainValidator(_bytes), PlainSerializer(units.format_bytes)]
#: NanoCPUs; printed as the CPU count users write (``0.5``)
NanoCpus = Annotated[int, PlainValidator(_cpus), PlainSerializer(units.format_cpus)]


def choice(*choices: str, aliases: dict[str, str] | None = None) -> Callable[[Any], str]:
    """A validator accepting one of ``choices`` (or an alias of one, normalized)."""
    aliases = aliases or {}

    def check(value: Any) -> str:
        if isinstance(value, str):
            if value in choices:
                return value
            if value in aliases:
                return aliases[value]
        listed = ", ".join(choices)
        raise fail(f"expected one of: {listed}; got {describe(value)}")

    return check


def Choice(*choices: str, aliases: dict[str, str] | None = None) -> Any:  # noqa: N802
    """``Annotated[str, ...]`` accepting one of ``choices``."""
    return Annotated[str, PlainValidator(choice(*choices, aliases=aliases))]


# --------------------------------------------------------------------------------------------
# Collections with Compose's two spellings


def _as_list(value: Any) -> Any:
    """A string (or number) where a list is allowed: a list of one."""
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return [value]
    return value


def _str_list(value: Any) -> list[str]:
    value = _as_list(value)
    if value is None:
        return []
    if not isinstance(value, list):
        raise fail(f"expected a string or a list of strings, got {describe(value)}")
    out = []
    for i, item in enumerate(value):
        if isinstance(item, bool) or not isinstance(item, (str, int, float)):
            raise fail(f"item {i + 1}: expected a string, got {describe(item)}")
        out.append(str(item))
    return out


def _strict_str_list(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise fail(f"expected a list of strings, got {describe(value)}")
    return _str_list(value)


#: a string or a list of strings -> list
StrOrList = Annotated[list[str], PlainValidator(_str_list)]
#: a list of strings (numbers taken as text)
StrList = Annotated[list[str], PlainValidator(_strict_str_list)]


def key_value_map(value: Any, *, sep: str = "=", what: str = "KEY=VALUE",
                  allow_missing: bool = False) -> dict[str, str | None]:
    """A map, or a list of ``KEY=VALUE`` strings, as a dict of strings.

    With ``allow_missing`` a list item without ``=`` (or a null map value) maps to None.
    """
    if value is None:
        return {}
    out: dict[str, str | None] = {}
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, (dict, list)):
                raise fail(f"{k}: expected a string, number or boolean, got {describe(v)}")
            out[str(k)] = None if (v is None and allow_missing) else value_str(v)
        return out
    if isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, bool) or not isinstance(item, (str, int, float)):
                raise fail(f"item {i + 1}: expected {what}, got {describe(item)}")
            text = str(item)
            if sep in text:
                k, v = text.split(sep, 1)
                out[k] = v
            elif allow_missing:
                out[text] = None
            else:
                out[text] = ""
            if not text.split(sep, 1)[0]:
                raise fail(f"item {i + 1}: expected {what}, got {describe(item)}")
        return out
    raise fail(f"expected a mapping or a list of {what}, got {describe(value)}")


def _str_map(value: Any) -> dict[str, str]:
    return key_value_map(value)  # type: ignore[return-value]


#: a map of strings, or a list of ``KEY=VALUE`` (labels, sysctls, args, options)
StrMap = Annotated[dict[str, str], PlainValidator(_str_map)]


def _opts_map(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise fail(f"expected a mapping, got {describe(value)}")
    return key_value_map(value)  # type: ignore[return-value]


#: a map of strings only (driver_opts, logging options)
OptsMap = Annotated[dict[str, str], PlainValidator(_opts_map)]


def str_keys(value: Any) -> Any:
    """Mapping keys as strings (YAML reads ``1:`` as an integer)."""
    if isinstance(value, dict):
        return {str(k): v for k, v in value.items()}
    return value


StrKeyed = BeforeValidator(str_keys)
