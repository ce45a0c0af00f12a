"""Stack files read as the Pulumi CLI reads them, so the plan an operator reviews is the one that deploys.

The CLI decodes `Pulumi.<stack>.yaml` with Go's yaml.v3 and hands each config value to the program as
text: scalars printed the Go way, objects as compact JSON with sorted keys. PyYAML alone reads YAML 1.1,
so `on` became true, `8:20` became 500 and a duplicate key silently won; here PyYAML's public loader parts
are put together with resolvers that follow yaml.v3 instead:

- booleans are only true/false (any case yaml.v3 takes); `yes`, `on`, `y` stay text;
- integers as Go's `strconv.ParseInt(_, 0, 64)` reads them after underscores are dropped: 0x, 0o, 0b,
  and 0777 (octal, as yaml.v3 still takes it); no sexagesimal `8:20`;
- floats as yaml.v3's float pattern, printed as Go prints them (`1e3` is "1000", `1.0` is "1");
- `~`, `null` and the empty value are null (the CLI passes "");
- a duplicate key is refused, as yaml.v3 refuses it;
- aliases are followed, but a document whose aliases expand past `MAX_NODES` is refused;
- an unquoted date or time is refused: yaml.v3 makes it a timestamp the CLI prints in Go's own format
  (`2001-12-14 00:00:00 +0000 UTC`), which no setting of this program takes; quoting it keeps it text;
- infinities and NaN are refused (the CLI cannot print them as JSON either).

tests/engine/test_stack_yaml.py compares this reader with the Pulumi CLI built here, case by case and on a
seeded random corpus.
"""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from typing import Any

from yaml import SafeLoader
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode

MAX_NODES = 100_000
"""Values (scalars, list items, mapping entries) a document may expand to through its aliases."""

BOOL_TAG = "tag:yaml.org,2002:bool"
NULL_TAG = "tag:yaml.org,2002:null"
NUMBER_TAG = "tag:synapse-workers:number"
"""Anything starting like a number: decided by `_number`, as yaml.v3 decides it (int, float or text)."""
TIME_TAG = "tag:synapse-workers:timestamp"
FLOAT_SPECIAL_TAG = "tag:synapse-workers:float-special"
MERGE_TAG = "tag:yaml.org,2002:merge"

_GO_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_TIMESTAMP = re.compile(r"^[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}([Tt ].*)?$")


class StackYamlError(ValueError):
    """One line: what is wrong and where."""


class PulumiLoader(SafeLoader):
    """PyYAML's safe loader with none of its YAML 1.1 resolvers (the ones below replace them) and a
    mapping constructor that refuses duplicate keys."""

    yaml_implicit_resolvers: dict[Any, Any] = {}  # noqa: RUF012 (PyYAML's class-level table, replaced)

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == MERGE_TAG:
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                raise StackYamlError(f"line {key_node.start_mark.line + 1}: a mapping key must be a scalar") from None
            if key in seen:
                raise StackYamlError(
                    f"line {key_node.start_mark.line + 1}: key {key!r} already defined at line {seen[key]}"
                    " (Pulumi refuses duplicate keys)"
                )
            seen[key] = key_node.start_mark.line + 1
        return dict(SafeConstructor.construct_mapping(self, node, deep=deep))


def _number(loader: PulumiLoader, node: ScalarNode) -> int | float | str:
    """yaml.v3's order: an integer as Go parses it (base from the prefix), else a float of its pattern,
    else the text itself."""
    text = loader.construct_scalar(node)
    assert isinstance(text, str)
    plain = text.replace("_", "")
    sign, digits = (plain[0], plain[1:]) if plain[:1] in "+-" else ("", plain)
    base = {"0x": 16, "0X": 16, "0o": 8, "0O": 8, "0b": 2, "0B": 2}.get(digits[:2])
    try:
        if base is not None:
            value = int(digits[2:], base)
        elif len(digits) > 1 and digits[0] == "0" and digits.isdigit():
            value = int(digits, 8)
        elif digits.isdigit():
            value = int(digits, 10)
        else:
            raise ValueError
        if value >= 1 << 64 or (sign == "-" and value > 1 << 63):
            raise ValueError
        return -value if sign == "-" else value
    except ValueError:
        pass
    if _GO_FLOAT.match(plain):
        return float(plain)
    return text


def _timestamp(loader: PulumiLoader, node: ScalarNode) -> str:
    raise StackYamlError(
        f"line {node.start_mark.line + 1}: the unquoted date {node.value!r} is a timestamp to Pulumi, "
        "passed on in Go's own format; quote it to keep it text"
    )


def _float_special(loader: PulumiLoader, node: ScalarNode) -> str:
    raise StackYamlError(f"line {node.start_mark.line + 1}: {node.value!r} (Pulumi cannot pass it on as a value)")


PulumiLoader.add_constructor(NUMBER_TAG, _number)
PulumiLoader.add_constructor(TIME_TAG, _timestamp)
PulumiLoader.add_constructor(FLOAT_SPECIAL_TAG, _float_special)
PulumiLoader.add_implicit_resolver(BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
PulumiLoader.add_implicit_resolver(NULL_TAG, re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""])
PulumiLoader.add_implicit_resolver(
    FLOAT_SPECIAL_TAG, re.compile(r"^(?:[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"), list("-+.")
)
PulumiLoader.add_implicit_resolver(TIME_TAG, _TIMESTAMP, list("0123456789"))
PulumiLoader.add_implicit_resolver(NUMBER_TAG, re.compile(r"^[-+.0-9]"), list("-+.0123456789"))
PulumiLoader.add_implicit_resolver(MERGE_TAG, re.compile(r"^(?:<<)$"), ["<"])


def _count(value: Any, budget: list[int]) -> None:
    budget[0] -= 1
    if budget[0] < 0:
        raise StackYamlError(f"aliases expand past {MAX_NODES:,} values (an alias bomb?)")
    if isinstance(value, dict):
        for key, inner in value.items():
            _count(key, budget)
            _count(inner, budget)
    elif isinstance(value, list):
        for inner in value:
            _count(inner, budget)


def load(text: str) -> Any:
    """The first document of `text`, as yaml.v3 would give it to the CLI."""
    loader = PulumiLoader(text)
    try:
        node: Node | None = loader.get_single_node()
        document = loader.construct_document(node) if node is not None else None
    except ConstructorError as error:
        mark = error.problem_mark
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise StackYamlError(f"{where}{error.problem}") from None
    finally:
        loader.dispose()
    _count(document, [MAX_NODES])
    return document


def go_float(value: float) -> str:
    """A float as the CLI prints it (Go's encoding/json, which follows JavaScript): the shortest digits
    that read back the same, in exponent form below 1e-6 and from 1e21, the exponent unpadded."""
    if value == 0:
        return "0"
    exact = Decimal(repr(value))
    exponent = exact.adjusted()
    if -6 <= exponent < 21:
        text = format(exact, "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    digits = format(exact.scaleb(-exponent).normalize(), "f")
    return f"{digits}e{'-' if exponent < 0 else '+'}{abs(exponent)}"


def go_json(value: Any) -> str:
    """Compact JSON as Go's encoding/json writes it: sorted keys, no spaces, <>& escaped."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isinf(value) or math.isnan(value):
            raise StackYamlError(f"{value} cannot be passed on as JSON")
        return go_float(value)
    if isinstance(value, list):
        return "[" + ",".join(go_json(v) for v in value) + "]"
    if isinstance(value, dict):
        items = sorted((cli_text(k), v) for k, v in value.items())
        return "{" + ",".join(f"{_go_string(k)}:{go_json(v)}" for k, v in items) + "}"
    return _go_string(str(value))


GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
"""What Go's encoding/json escapes beyond JSON's own: HTML's three, and the two JavaScript line breaks."""


def _go_string(text: str) -> str:
    encoded = json.dumps(text, ensure_ascii=False)
    for raw, escaped in GO_ESCAPES.items():
        encoded = encoded.replace(raw, escaped)
    return encoded


def cli_text(value: Any) -> str:
    """A config value as the CLI hands it to the program."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, (dict, list)):
        return go_json(value)
    return str(value)
