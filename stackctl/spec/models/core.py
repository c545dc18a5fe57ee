"""The small model machinery the stack models are declared with (in place of pydantic).

Why our own: every stack verb, and the agent, loads a stack file. With pydantic, importing it
and building the schemas of the ~30 stack models cost about 250 ms before a single key was
read (``bench/config_speed.py``); the models use a small part of it — typed fields with our
own validators and our own error wording. This module gives that part, with pydantic's
spelling so that the model modules read as before:

- fields are class annotations, ``Annotated[T, PlainValidator(f)]`` / ``BeforeValidator(f)`` /
  ``PlainSerializer(f)``, defaults as values or :func:`Field` (``default_factory``,
  ``exclude``); names starting with ``_`` are private attributes (:func:`PrivateAttr`);
- types understood: ``str int float bool Any``, ``X | None``, ``list[T]``, ``dict[str, T]``,
  a :class:`BaseModel` subclass, :class:`SecretStr`, and ``Annotated`` around any of them;
- :func:`field_validator` (``mode`` ``before``/``after``/``plain``) and
  :func:`field_serializer` decorate methods as in pydantic;
- validation collects every error of the input with its location (``loc``, as pydantic's
  errors have it) and raises one :class:`ValidationFailed`; a validator reports a problem by
  raising :class:`Invalid` (its message is printed as it is);
- a class is compiled (annotations read, a checker per field) the first time it validates.
  The model modules do without ``from __future__ import annotations`` so that their
  annotations are objects from cached bytecode, not strings to compile in every process.

Pure; imports only the standard library.
"""

from __future__ import annotations

import sys
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any, ClassVar

from stackctl.spec.record import FrozenRecord

_MISSING: Any = object()
_BAD: Any = object()  # a checker's result when it recorded an error

Loc = tuple


# --------------------------------------------------------------------------------------------
# Errors


class Invalid(ValueError):
    """Raised by a validator: ``message`` as it will be shown; ``at`` a dotted key below the
    place being validated (``"replicas"`` for a check made on the whole ``deploy``)."""

    def __init__(self, message: str, at: str | tuple = "") -> None:
        super().__init__(message)
        self.message = message
        self.at = at


class ErrorItem(FrozenRecord):
    """One validation error. ``kind``: ``invalid`` (our wording), ``unknown`` (an unknown
    key; ``input`` is its value), ``missing`` (a required key)."""

    __slots__ = ("loc", "kind", "message", "input", "suggestion")

    def __init__(self, loc: Loc, kind: str, message: str, input: Any = None,  # noqa: A002
                 suggestion: str | None = None) -> None:
        _set = object.__setattr__
        _set(self, "loc", loc)
        _set(self, "kind", kind)
        _set(self, "message", message)
        _set(self, "input", input)
        _set(self, "suggestion", suggestion)


class ValidationFailed(ValueError):
    """Every error found while validating one input."""

    def __init__(self, errors: list[ErrorItem]) -> None:
        super().__init__("; ".join(f"{'.'.join(map(str, e.loc))}: {e.message}"
                                   for e in errors[:5]))
        self.errors = errors


# --------------------------------------------------------------------------------------------
# Declarations


class PlainValidator:
    """Validate with ``func`` alone (it returns the value or raises :class:`Invalid`)."""

    __slots__ = ("func",)

    def __init__(self, func: Callable[[Any], Any]) -> None:
        self.func = func


class BeforeValidator(PlainValidator):
    """Run ``func`` on the input, then the type's own check."""

    __slots__ = ()


class PlainSerializer:
    """Print the value as ``func(value)``."""

    __slots__ = ("func",)

    def __init__(self, func: Callable[[Any], Any]) -> None:
        self.func = func


class FieldInfo:
    __slots__ = ("default", "default_factory", "exclude")

    def __init__(self, default: Any = _MISSING, default_factory: Callable[[], Any] | None = None,
                 exclude: bool = False) -> None:
        self.default = default
        self.default_factory = default_factory
        self.exclude = exclude


def Field(default: Any = _MISSING, *, default_factory: Callable[[], Any] | None = None,  # noqa: N802
          exclude: bool = False) -> Any:
    return FieldInfo(default, default_factory, exclude)


class _Private:
    __slots__ = ("default", "default_factory")

    def __init__(self, default: Any, default_factory: Callable[[], Any] | None) -> None:
        self.default = default
        self.default_factory = default_factory

    def make(self) -> Any:
        return self.default_factory() if self.default_factory else self.default


def PrivateAttr(default: Any = None, *, default_factory: Callable[[], Any] | None = None) -> Any:  # noqa: N802
    return _Private(default, default_factory)


class _Decorated:
    """A method marked by :func:`field_validator` or :func:`field_serializer`."""

    def __init__(self, func: Any, names: tuple[str, ...], mode: str, role: str) -> None:
        self.func = func
        self.names = names
        self.mode = mode
        self.role = role

    def bound(self, cls: type) -> Callable[..., Any]:
        func = self.func
        if isinstance(func, classmethod):
            return func.__get__(None, cls)
        return func  # a plain method (serializers): called with the instance


def field_validator(*names: str, mode: str = "after") -> Callable[[Any], Any]:
    if mode not in ("before", "after", "plain"):
        raise ValueError(f"unknown validator mode {mode}")
    return lambda func: _Decorated(func, names, mode, "validator")


def field_serializer(*names: str) -> Callable[[Any], Any]:
    return lambda func: _Decorated(func, names, "plain", "serializer")


class SecretStr:
    """A string that does not show itself (``repr`` and ``str`` are ``**********``)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "SecretStr('**********')"

    def __str__(self) -> str:
        return "**********" if self._value else ""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretStr) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


# --------------------------------------------------------------------------------------------
# Checkers and printers compiled from type hints

Checker = Callable[[Any, Loc, list], Any]
Printer = Callable[[Any], Any]


def _describe(value: Any) -> str:
    from stackctl.spec.models.base import describe  # the one wording of inputs
    return describe(value)


def _plain(func: Callable[[Any], Any]) -> Checker:
    def check(value: Any, loc: Loc, errs: list) -> Any:
        try:
            return func(value)
        except Invalid as exc:
            errs.append(_invalid(loc, exc))
            return _BAD
    return check


def _invalid(loc: Loc, exc: Invalid) -> ErrorItem:
    if isinstance(exc.at, tuple):
        loc = loc + exc.at
    elif exc.at:
        loc = loc + tuple(exc.at.split("."))
    return ErrorItem(loc, "invalid", exc.message)


def _before(func: Callable[[Any], Any], inner: Checker) -> Checker:
    def check(value: Any, loc: Loc, errs: list) -> Any:
        try:
            value = func(value)
        except Invalid as exc:
            errs.append(_invalid(loc, exc))
            return _BAD
        return inner(value, loc, errs)
    return check


def _expect(what: str, test: Callable[[Any], bool], cast: Callable[[Any], Any] = lambda v: v
            ) -> Checker:
    def check(value: Any, loc: Loc, errs: list) -> Any:
        if test(value):
            return cast(value)
        errs.append(ErrorItem(loc, "invalid", f"expected {what}, got {_describe(value)}"))
        return _BAD
    return check


def _lax_int(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    if isinstance(value, float):
        return value.is_integer()
    return isinstance(value, str) and value.strip().lstrip("+-").isdigit()


_SIMPLE: dict[Any, Checker] = {
    str: _expect("a string", lambda v: isinstance(v, str)),
    int: _expect("an integer", _lax_int, lambda v: int(v)),
    float: _expect("a number", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
                   float),
    bool: _expect("true or false", lambda v: isinstance(v, bool)),
    SecretStr: _expect("a string", lambda v: isinstance(v, (str, SecretStr)),
                       lambda v: v if isinstance(v, SecretStr) else SecretStr(v)),
    type(None): _expect("null", lambda v: v is None),
}


def _any(value: Any, loc: Loc, errs: list) -> Any:
    return value


def _is_union(hint: Any) -> bool:
    return isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union


def compile_checker(hint: Any) -> Checker:
    """The checker of a type hint."""
    if hint is Any:
        return _any
    if typing.get_origin(hint) is Annotated:
        base, *meta = typing.get_args(hint)
        plain = [m for m in meta if type(m) is PlainValidator]
        check = _plain(plain[-1].func) if plain else compile_checker(base)
        for m in reversed(meta):
            if type(m) is BeforeValidator:
                check = _before(m.func, check)
        return check
    if _is_union(hint):
        members = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(members) < len(typing.get_args(hint))
        inner = compile_checker(members[0]) if len(members) == 1 else _first_of(members)

        def check(value: Any, loc: Loc, errs: list) -> Any:
            if value is None and optional:
                return None
            return inner(value, loc, errs)
        return check
    origin = typing.get_origin(hint)
    if origin is list:
        (item_hint,) = typing.get_args(hint) or (Any,)
        item = compile_checker(item_hint)

        def check_list(value: Any, loc: Loc, errs: list) -> Any:
            if not isinstance(value, (list, tuple)):
                errs.append(ErrorItem(loc, "invalid", f"expected a list, got {_describe(value)}"))
                return _BAD
            out = []
            bad = False
            for i, v in enumerate(value):
                r = item(v, loc + (i,), errs)
                bad = bad or r is _BAD
                out.append(r)
            return _BAD if bad else out
        return check_list
    if origin is dict:
        key_hint, value_hint = typing.get_args(hint) or (Any, Any)
        val = compile_checker(value_hint)
        string_keys = key_hint is str

        def check_dict(value: Any, loc: Loc, errs: list) -> Any:
            if not isinstance(value, dict):
                errs.append(ErrorItem(loc, "invalid",
                                      f"expected a mapping, got {_describe(value)}"))
                return _BAD
            out = {}
            bad = False
            for k, v in value.items():
                if string_keys and not isinstance(k, str):
                    errs.append(ErrorItem(loc + (k,), "invalid",
                                          f"expected a string key, got {_describe(k)}"))
                    bad = True
                    continue
                r = val(v, loc + (k,), errs)
                bad = bad or r is _BAD
                out[k] = r
            return _BAD if bad else out
        return check_dict
    if isinstance(hint, type) and issubclass(hint, BaseModel):
        return hint._check
    if hint in _SIMPLE:
        return _SIMPLE[hint]
    raise TypeError(f"stack models: unsupported field type {hint!r}")


def _first_of(members: list[Any]) -> Checker:
    checks = [compile_checker(m) for m in members]

    def check(value: Any, loc: Loc, errs: list) -> Any:
        first: list = []
        for c in checks:
            trial: list = []
            r = c(value, loc, trial)
            if r is not _BAD:
                return r
            first = first or trial
        errs.extend(first)
        return _BAD
    return check


def to_plain(value: Any) -> Any:
    """Plain data of a value whose type is not known here (JSON-like)."""
    if isinstance(value, BaseModel):
        return value.dump_plain()
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, SecretStr):
        return str(value)
    return value


def compile_printer(hint: Any) -> Printer:
    """How a value of type ``hint`` is printed as plain data."""
    if typing.get_origin(hint) is Annotated:
        base, *meta = typing.get_args(hint)
        sers = [m for m in meta if type(m) is PlainSerializer]
        if sers:
            return sers[-1].func
        return compile_printer(base)
    if _is_union(hint):
        members = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(members) == 1:
            inner = compile_printer(members[0])
            return lambda v: None if v is None else inner(v)
        return to_plain
    origin = typing.get_origin(hint)
    if origin is list:
        (item_hint,) = typing.get_args(hint) or (Any,)
        item = compile_printer(item_hint)
        return lambda v: [item(x) for x in v]
    if origin is dict:
        _, value_hint = typing.get_args(hint) or (Any, Any)
        val = compile_printer(value_hint)
        return lambda v: {k: val(x) for k, x in v.items()}
    return to_plain


# --------------------------------------------------------------------------------------------
# Models


def _holds_models(hint: Any) -> bool:
    """Whether a value of type ``hint`` may hold models (for walks over a model tree)."""
    if isinstance(hint, type):
        return issubclass(hint, BaseModel)
    return any(_holds_models(a) for a in typing.get_args(hint))


class _FieldPlan:
    __slots__ = ("name", "default", "factory", "exclude", "check", "hint", "_printer",
                 "serializer", "nested")

    def __init__(self, name: str, default: Any, factory: Any, exclude: bool, check: Checker,
                 hint: Any, serializer: Any, nested: bool = False) -> None:
        self.nested = nested
        self.name = name
        self.default = default
        self.factory = factory
        self.exclude = exclude
        self.check = check
        self.hint = hint
        self._printer: Printer | None = None
        self.serializer = serializer

    @property
    def printer(self) -> Printer:
        """How the field is printed, compiled on first use (``config -q`` prints nothing)."""
        if self._printer is None:
            self._printer = compile_printer(self.hint)
        return self._printer


class BaseModel:
    """A model: typed fields, validated from plain data, printed back as plain data."""

    _plan_: ClassVar[tuple[_FieldPlan, ...] | None] = None
    _privates_: ClassVar[dict[str, _Private]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._plan_ = None

    # -- compiling

    @classmethod
    def _compiled(cls) -> tuple[_FieldPlan, ...]:
        plan = cls.__dict__.get("_plan_")
        if plan is None:
            plan = cls._compile()
        return plan

    @classmethod
    def _compile(cls) -> tuple[_FieldPlan, ...]:
        hints = _annotations(cls)
        decorated: dict[str, list[_Decorated]] = {}
        for klass in reversed(cls.__mro__):
            for attr in vars(klass).values():
                if isinstance(attr, _Decorated):
                    for name in attr.names:
                        decorated.setdefault(name, []).append(attr)
        fields = []
        privates: dict[str, _Private] = {}
        for name, hint in hints.items():
            if typing.get_origin(hint) is ClassVar or name.endswith("_") and name.startswith("_"):
                continue
            declared = _class_attr(cls, name)
            if name.startswith("_"):
                privates[name] = declared if isinstance(declared, _Private) else \
                    _Private(None if declared is _MISSING else declared, None)
                continue
            info = declared if isinstance(declared, FieldInfo) else FieldInfo(declared)
            marks = decorated.get(name, [])
            validators = [m for m in marks if m.role == "validator"]
            plain = [m for m in validators if m.mode == "plain"]
            check = _plain(plain[-1].bound(cls)) if plain else compile_checker(hint)
            for m in validators:
                if m.mode == "before":
                    check = _before(m.bound(cls), check)
                elif m.mode == "after":
                    check = _after(m.bound(cls), check)
            serializers = [m for m in marks if m.role == "serializer"]
            fields.append(_FieldPlan(name, info.default, info.default_factory, info.exclude,
                                     check, hint,
                                     serializers[-1].func if serializers else None,
                                     _holds_models(hint)))
        plan = tuple(fields)
        cls._plan_ = plan
        cls._privates_ = privates
        return plan

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in cls._compiled()]

    @classmethod
    def nested_fields(cls) -> list[str]:
        """The fields whose values may hold models."""
        names = cls.__dict__.get("_nested_")
        if names is None:
            names = [f.name for f in cls._compiled() if f.nested]
            cls._nested_ = names
        return names

    # -- validating

    @classmethod
    def _check(cls, data: Any, loc: Loc, errs: list) -> Any:
        """Validate ``data`` into an instance, recording errors in ``errs`` (subclasses
        hook in here: see :class:`stackctl.spec.models.base.Model`)."""
        if isinstance(data, cls):
            return data
        if not isinstance(data, dict):
            errs.append(ErrorItem(loc, "invalid", f"expected a mapping, got {_describe(data)}"))
            return _BAD
        known = set(cls.field_names())
        unknown = [k for k in data if k not in known]
        for key in unknown:
            errs.append(ErrorItem(loc + (key,), "unknown", "unknown key", data[key]))
        result = cls._fill(data, loc, errs)
        return _BAD if unknown else result

    @classmethod
    def _fill(cls, data: dict[str, Any], loc: Loc, errs: list) -> Any:
        fill = cls.__dict__.get("_fill_")
        if fill is None:
            fill = cls._fill_plan()
        by_name, statics, factories, required = fill
        values: dict[str, Any] = dict(statics)
        bad = False
        for name, raw in data.items():
            f = by_name.get(name)
            if f is None:
                continue
            value = f.check(raw, loc + (name,), errs)
            bad = bad or value is _BAD
            values[name] = value
        for name, factory in factories:
            if name not in data:
                values[name] = factory()
        for name in required:
            if name not in data:
                errs.append(ErrorItem(loc + (name,), "missing", "required key is missing"))
                bad = True
        if bad:
            return _BAD
        instance = cls.__new__(cls)
        d = instance.__dict__
        d.update(values)
        for name, private in cls._privates_.items():
            d[name] = private.make()
        return instance

    @classmethod
    def _fill_plan(cls) -> tuple:
        """What :meth:`_fill` needs, per class: fields by name, plain defaults, factories,
        required fields."""
        plan = cls._compiled()
        fill = ({f.name: f for f in plan},
                {f.name: f.default for f in plan if f.factory is None
                 and f.default is not _MISSING},
                [(f.name, f.factory) for f in plan if f.factory is not None],
                [f.name for f in plan if f.factory is None and f.default is _MISSING])
        cls._fill_ = fill
        return fill

    @classmethod
    def model_validate(cls, data: Any) -> Any:
        errs: list[ErrorItem] = []
        result = cls._check(data, (), errs)
        if errs or result is _BAD:
            raise ValidationFailed(errs)
        return result

    def __init__(self, **data: Any) -> None:
        made = type(self).model_validate(data)
        self.__dict__.update(made.__dict__)

    # -- copying, comparing, printing

    def model_copy(self, *, update: dict[str, Any] | None = None) -> Any:
        new = type(self).__new__(type(self))
        new.__dict__.update(self.__dict__)
        if update:
            new.__dict__.update(update)
        return new

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.__dict__ == self.__dict__

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in self._compiled())
        return f"{type(self).__name__}({shown})"

    def fields_plain(self) -> dict[str, Any]:
        """Every printed field as plain data (before the model's own filtering)."""
        out = {}
        for f in self._compiled():
            if f.exclude:
                continue
            value = self.__dict__[f.name]
            if f.serializer is not None:
                out[f.name] = to_plain(f.serializer(self, value))
            elif value is None:
                out[f.name] = None
            else:
                out[f.name] = f.printer(value)
        return out

    def dump_plain(self) -> dict[str, Any]:
        return self.fields_plain()


def _annotations(cls: type) -> dict[str, Any]:
    """The field annotations of ``cls`` and its bases, as objects. The model modules do not
    use ``from __future__ import annotations``, so their annotations are objects already
    (evaluated once, from cached bytecode); ``typing.get_type_hints`` would compile every
    string again in each process. A string annotation is still evaluated here."""
    out: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        anns = klass.__dict__.get("__annotations__", {})
        module = None
        for name, ann in anns.items():
            if isinstance(ann, str):
                if ann.startswith(("ClassVar[", "typing.ClassVar[")):
                    continue  # not a field (this module's own class variables)
                module = module or vars(sys.modules[klass.__module__])
                ann = eval(ann, module)  # noqa: S307 - our own modules' annotations
            out[name] = ann
    return out


def _after(func: Callable[[Any], Any], inner: Checker) -> Checker:
    def check(value: Any, loc: Loc, errs: list) -> Any:
        value = inner(value, loc, errs)
        if value is _BAD:
            return value
        try:
            return func(value)
        except Invalid as exc:
            errs.append(_invalid(loc, exc))
            return _BAD
    return check


def _class_attr(cls: type, name: str) -> Any:
    for klass in cls.__mro__:
        if name in vars(klass):
            return vars(klass)[name]
    return _MISSING
