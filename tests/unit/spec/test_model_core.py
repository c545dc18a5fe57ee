"""The model machinery under the stack models (stackctl/spec/models/core.py)."""

from __future__ import annotations

from typing import Annotated, Any

import pytest

from stackctl.spec.models.core import (
    BaseModel,
    BeforeValidator,
    Field,
    Invalid,
    PlainSerializer,
    PlainValidator,
    PrivateAttr,
    SecretStr,
    ValidationFailed,
    field_serializer,
    field_validator,
)


def _even(value: Any) -> int:
    if not isinstance(value, int) or value % 2:
        raise Invalid(f"expected an even number, got {value!r}")
    return value


class Leaf(BaseModel):
    n: Annotated[int, PlainValidator(_even), PlainSerializer(lambda v: f"#{v}")] = 0
    tags: list[str] = Field(default_factory=list)


class Tree(BaseModel):
    name: str
    leaves: list[Leaf] = Field(default_factory=list)
    by_key: dict[str, Leaf] = Field(default_factory=dict)
    maybe: Annotated[Leaf | None, BeforeValidator(lambda v: {"n": v} if isinstance(v, int) else v)] = None
    secret: SecretStr | None = None
    hidden: int = Field(default=1, exclude=True)
    _seen: list = PrivateAttr(default_factory=list)

    @field_validator("name", mode="after")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()

    @field_serializer("secret")
    def _redact(self, value: SecretStr | None) -> str | None:
        return None if value is None else "<redacted>"


def test_every_error_is_collected_with_its_location():
    with pytest.raises(ValidationFailed) as info:
        Tree.model_validate({"leaves": [{"n": 2}, {"n": 3}, "x"],
                             "by_key": {"a": {"n": 5}}, "maybe": 7})
    found = {(e.loc, e.kind, e.message) for e in info.value.errors}
    assert found == {
        (("name",), "missing", "required key is missing"),
        (("leaves", 1, "n"), "invalid", "expected an even number, got 3"),
        (("leaves", 2), "invalid", 'expected a mapping, got "x"'),
        (("by_key", "a", "n"), "invalid", "expected an even number, got 5"),
        (("maybe", "n"), "invalid", "expected an even number, got 7"),
    }


def test_values_defaults_printing_and_privates():
    t = Tree(name="oak", leaves=[{"n": 2, "tags": ["x"]}], maybe=4, secret="pw")
    assert t.name == "OAK" and t.leaves[0].n == 2 and t.maybe.n == 4
    assert t.secret.get_secret_value() == "pw" and "pw" not in repr(t.secret)
    assert t.by_key == {} and t._seen == []
    other = Tree(name="elm")
    assert other.leaves is not t.leaves  # factories give each instance its own value
    assert t.dump_plain() == {"name": "OAK", "leaves": [{"n": "#2", "tags": ["x"]}],
                              "by_key": {}, "maybe": {"n": "#4", "tags": []},
                              "secret": "<redacted>"}
    copy = t.model_copy(update={"name": "ASH"})
    assert copy.name == "ASH" and t.name == "OAK" and copy.leaves == t.leaves
    assert Tree(name="oak") == Tree(name="oak") != Tree(name="elm")


def test_plain_types_are_strict_where_pydantic_was():
    with pytest.raises(ValidationFailed) as info:
        Tree.model_validate({"name": 5, "by_key": {1: {}}, "extra": 1})
    assert [(e.loc, e.message) for e in info.value.errors] == [
        (("extra",), "unknown key"),
        (("name",), "expected a string, got 5"),
        (("by_key", 1), "expected a string key, got 1"),
    ]
