"""Value types for stack config, parsed the way `pulumi config set` stores values.

The CLI hands every scalar to the program as text (`5000` arrives as "5000", `true` as "true") and
structured values as JSON, so numbers may arrive as text or as JSON numbers. pydantic's lax mode would
also take `true` for 1 or "yes" for true; these validators take exactly what an operator would mean.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator

_WHOLE = re.compile(r"^[+-]?\d+$")


def _whole_number(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("a whole number, not true/false")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _WHOLE.match(value.strip()):
        return int(value.strip())
    raise ValueError("a whole number")


def _number(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("a number, not true/false")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            parsed = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError("a number") from None
        if parsed.is_finite():
            return float(parsed)
    raise ValueError("a number")


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip() in ("true", "false"):
        return value.strip() == "true"
    raise ValueError("true or false")


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    raise ValueError("text")


def _matching(pattern: str, what: str) -> AfterValidator:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(what)
        return value

    return AfterValidator(check)


WholeNumber = Annotated[int, BeforeValidator(_whole_number)]
Number = Annotated[float, BeforeValidator(_number)]
Flag = Annotated[bool, BeforeValidator(_flag)]
Text = Annotated[str, BeforeValidator(_text)]

DNS_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
DnsLabel = Annotated[Text, _matching(DNS_LABEL, "a DNS label")]
DnsSubdomain = Annotated[Text, _matching(rf"(?=.{{1,253}}$){DNS_LABEL}(\.{DNS_LABEL})*", "a DNS subdomain name")]
Hostname = Annotated[
    Text,
    _matching(
        r"(?=.{1,253}(:\d+)?$)[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?"
        r"(\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*(:\d{1,5})?",
        "a host name",
    ),
]
# registry/path:tag or registry/path@sha256:digest; a tag or a digest is required so a deploy is repeatable.
ImageRef = Annotated[
    Text,
    _matching(
        r"(?:[a-z0-9]+(?:[._-][a-z0-9]+)*(?::\d+)?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
        r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
        r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|@sha256:[a-f0-9]{64})",
        "an image reference with a tag or digest",
    ),
]
_SUFFIXES = {
    "m": Decimal("0.001"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
}


def quantity(text: str) -> Decimal:
    """A Kubernetes quantity's value, for comparing a request with its limit."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([A-Za-z]*)", text)
    if match is None or (match.group(2) and match.group(2) not in _SUFFIXES):
        raise ValueError(f"not a quantity: {text}")
    return Decimal(match.group(1)) * _SUFFIXES.get(match.group(2), Decimal(1))


Quantity = Annotated[
    Text,
    _matching(r"\d+(\.\d+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?", "a Kubernetes quantity such as 500m or 2Gi"),
]
ByteSize = Annotated[
    Text,
    _matching(r"[1-9]\d*[KMGT]?", "a size in bytes with an optional K, M, G or T suffix (binary), such as 50M"),
]
"""Synapse's byte sizes (`max_upload_size`): config/_base.py `parse_size`, 1024-based suffixes."""
StackName = Annotated[
    Text,
    _matching(r"[A-Za-z0-9_.-]+|[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", "a stack name or org/project/stack"),
]
_LABEL_NAME = r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)"
LabelKey = Annotated[
    Text, _matching(rf"({DNS_LABEL}(\.{DNS_LABEL})*/)?{_LABEL_NAME}", "a Kubernetes label key such as release")
]
LabelValue = Annotated[Text, _matching(rf"{_LABEL_NAME}?", "a Kubernetes label value (63 characters at most)")]
HttpsUrl = Annotated[Text, _matching(r"https?://[^\s/]+(/[^\s]*)?", "an http(s) URL")]
