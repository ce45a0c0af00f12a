"""Prometheus' HTTP API, as much of it as `recommend` needs: instant queries and the active targets.

Kept apart from the recommendation logic so that the logic can be tested against recorded answers and
this module against a real server. Only the standard library: a bearer token read from a file (as a
Kubernetes service-account token is mounted, so it never appears on a command line or in a process
list), a CA bundle for a Prometheus behind TLS, and a timeout on every request so an unreachable server
ends the command instead of hanging it.
"""

from __future__ import annotations

import json
import math
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_TIMEOUT = 10.0


class PrometheusError(Exception):
    """Prometheus could not answer: `flag` names the input at fault, `problem` says what happened."""

    def __init__(self, flag: str, value: str, problem: str) -> None:
        self.flag = flag
        self.value = value
        self.problem = problem
        super().__init__(f"{flag} = {json.dumps(value)}: {problem}")


@dataclass(frozen=True)
class Sample:
    """One series of an instant vector: its labels and its value (NaN when Prometheus says so)."""

    labels: dict[str, str]
    value: float
    timestamp: float
    """The evaluation time (Unix seconds)."""


class Prometheus:
    def __init__(
        self,
        url: str,
        token_file: Path | None = None,
        ca_bundle: Path | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise PrometheusError("--prometheus", url, "not an http:// or https:// URL")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.headers = {"Accept": "application/json"}
        if token_file is not None:
            try:
                token = token_file.read_text(encoding="utf-8").strip()
            except OSError as error:
                raise PrometheusError(
                    "--bearer-token-file", str(token_file), f"cannot read it: {error.strerror}"
                ) from None
            if not token:
                raise PrometheusError("--bearer-token-file", str(token_file), "the file is empty")
            self.headers["Authorization"] = f"Bearer {token}"
        context: ssl.SSLContext | None = None
        if ca_bundle is not None:
            try:
                context = ssl.create_default_context(cafile=str(ca_bundle))
            except (OSError, ssl.SSLError) as error:
                raise PrometheusError("--ca-bundle", str(ca_bundle), f"not a readable PEM bundle: {error}") from None
        self.context = context

    def _get(self, path: str, params: dict[str, str]) -> Any:
        query = urllib.parse.urlencode(params)
        request = urllib.request.Request(f"{self.url}{path}?{query}", headers=self.headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self.context) as response:
                body = response.read()
        except urllib.error.HTTPError as error:
            body = error.read()
            detail = _api_error(body) or f"HTTP {error.code} {error.reason}"
            raise PrometheusError("--prometheus", self.url, f"{path} answered {detail}") from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise PrometheusError("--prometheus", self.url, f"unreachable ({reason})") from None
        try:
            document = json.loads(body)
        except ValueError:
            raise PrometheusError(
                "--prometheus", self.url, f"{path} did not answer JSON: not a Prometheus API"
            ) from None
        if not isinstance(document, dict) or document.get("status") != "success":
            detail = _api_error(body) or "no status"
            raise PrometheusError("--prometheus", self.url, f"{path} answered {detail}")
        return document.get("data")

    def query(self, expr: str) -> list[Sample]:
        """An instant query at the server's current time; an empty list when nothing matched."""
        data = self._get("/api/v1/query", {"query": expr})
        if not isinstance(data, dict) or data.get("resultType") not in ("vector", "scalar"):
            raise PrometheusError("--prometheus", self.url, f"unexpected answer to {expr!r}")
        if data["resultType"] == "scalar":
            at, value = data["result"]
            return [Sample({}, _number(value), float(at))]
        return [
            Sample(dict(item.get("metric", {})), _number(item["value"][1]), float(item["value"][0]))
            for item in data["result"]
        ]

    def targets(self) -> list[dict[str, Any]]:
        """The active scrape targets, each with its `labels` and `scrapeInterval`."""
        data = self._get("/api/v1/targets", {"state": "active"})
        if not isinstance(data, dict):
            raise PrometheusError("--prometheus", self.url, "unexpected answer from /api/v1/targets")
        return list(data.get("activeTargets") or [])


def _number(text: Any) -> float:
    """Prometheus writes sample values as strings, NaN and ±Inf included."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def _api_error(body: bytes) -> str | None:
    try:
        document = json.loads(body)
    except ValueError:
        return None
    if isinstance(document, dict) and "error" in document:
        return f"{document.get('errorType', 'error')}: {document['error']}"
    return None


def parse_duration(text: str) -> float | None:
    """Seconds in a Prometheus duration (`15m`, `1h30m`, `45s`); None when it is not one."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    total, number, i = 0.0, "", 0
    if not text:
        return None
    while i < len(text):
        char = text[i]
        if char.isdigit():
            number += char
            i += 1
            continue
        unit = "ms" if text.startswith("ms", i) else char
        if not number or unit not in units:
            return None
        total += int(number) * units[unit]
        number = ""
        i += len(unit)
    if number:
        return None
    return total
