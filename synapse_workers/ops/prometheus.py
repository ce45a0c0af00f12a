"""Prometheus' HTTP API, as much of it as `recommend` needs: instant queries and the active targets.

Kept apart from the recommendation logic so that the logic can be tested against recorded answers and
this module against a real server. Only the standard library. The server is untrusted input: every
request has one deadline for the whole exchange (a server dripping a byte a second still ends it), an
answer has a size cap, redirects are never followed (the bearer token goes to the URL given and
nowhere else), and every answer is checked against the API's shape before a figure is read from it.
The bearer token is read from a file (as a Kubernetes service-account token is mounted, so it never
appears on a command line or in a process list), strictly, and never appears in a message: whatever
the server echoes back is cut to one line with the token taken out.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import re
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_TIMEOUT = 10.0
LONGEST_TIMEOUT = 300.0
MAX_ANSWER_BYTES = 16 * 1024 * 1024
"""Far above any answer `recommend`'s queries get (a few KiB), far below what would hurt this process."""
TOKEN_CHARACTERS = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
"""RFC 6750's b64token: what a bearer token may hold (a Kubernetes service-account JWT fits)."""


class PrometheusError(Exception):
    """Prometheus could not answer: `flag` names the input at fault, `problem` says what happened."""

    def __init__(self, flag: str, value: str, problem: str) -> None:
        self.flag = flag
        self.value = value
        self.problem = problem
        super().__init__(f"{flag} = {json.dumps(value)}: {problem}")


class ShapeError(PrometheusError):
    """An answer that is not what the API documents; the caller names the metric and job it was for."""


@dataclass(frozen=True)
class Sample:
    """One series of an instant vector: its labels and its value (NaN, ±Inf or negative as Prometheus
    said; the caller decides which of those its figure can be)."""

    labels: dict[str, str]
    value: float
    timestamp: float
    """The evaluation time (Unix seconds)."""


def check_timeout(value: float) -> float:
    if not (math.isfinite(value) and 0 < value <= LONGEST_TIMEOUT):
        raise PrometheusError(
            "--timeout", f"{value:g}", f"not a number of seconds above 0 and at most {LONGEST_TIMEOUT:g}"
        )
    return value


def check_url(url: str) -> str:
    """A base URL: http(s), a host, no credentials (they would be printed in every message), no query."""
    try:
        parsed = urllib.parse.urlsplit(url)
        port = parsed.port
    except ValueError:
        raise PrometheusError("--prometheus", url, "not a URL") from None
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise PrometheusError("--prometheus", url, "not an http:// or https:// URL")
    if parsed.username is not None or parsed.password is not None:
        host = f"{parsed.hostname}:{port}" if port else parsed.hostname
        shown = urllib.parse.urlunsplit((parsed.scheme, host, parsed.path, "", ""))
        raise PrometheusError(
            "--prometheus", shown, "credentials in the URL (not shown); give a token with --bearer-token-file"
        )
    if parsed.query or parsed.fragment:
        raise PrometheusError("--prometheus", url, "a base URL takes no ?query or #fragment")
    return url.rstrip("/")


def read_token(path: Path) -> str:
    """One line of token characters, a single trailing newline allowed; anything else refused unquoted."""

    def refuse(problem: str) -> PrometheusError:
        return PrometheusError(
            "--bearer-token-file", str(path), f"{problem}; allowed: one line holding the token (RFC 6750 characters)"
        )

    try:
        raw = path.read_bytes()
    except OSError as error:
        raise PrometheusError("--bearer-token-file", str(path), f"cannot read it: {error.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise refuse("not UTF-8") from None
    token = text.removesuffix("\n")
    if not token:
        raise refuse("the file is empty")
    if "\n" in token or "\r" in token:
        raise refuse("more than one line")
    if not TOKEN_CHARACTERS.fullmatch(token):
        raise refuse("characters a bearer token cannot hold (spaces, control or non-ASCII characters)")
    return token


class Prometheus:
    def __init__(
        self,
        url: str,
        token_file: Path | None = None,
        ca_bundle: Path | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.url = check_url(url)
        self.timeout = check_timeout(timeout)
        parsed = urllib.parse.urlsplit(self.url)
        self.scheme, self.host, self.port = parsed.scheme, parsed.hostname or "", parsed.port
        self.base_path = parsed.path
        self.headers = {"Accept": "application/json", "Accept-Encoding": "identity"}
        self.token: str | None = None
        if token_file is not None:
            self.token = read_token(token_file)
            self.headers["Authorization"] = f"Bearer {self.token}"
        context: ssl.SSLContext | None = None
        if ca_bundle is not None:
            try:
                context = ssl.create_default_context(cafile=str(ca_bundle))
            except (OSError, ssl.SSLError) as error:
                raise PrometheusError(
                    "--ca-bundle", str(ca_bundle), f"not a readable PEM bundle: {_one_line(str(error))}"
                ) from None
        self.context = context

    def _untrusted(self, text: str) -> str:
        """Text the server sent, safe for a one-line message: the token taken out, at most 200 characters."""
        if self.token:
            text = text.replace(self.token, "<token>")
        return _one_line(text)[:200]

    def _connection(self) -> http.client.HTTPConnection:
        if self.scheme == "https":
            context = self.context or ssl.create_default_context()
            return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout, context=context)
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def _exchange(self, target: str) -> tuple[int, str, str | None, bytes]:
        """Status, reason, Location and body, all within one deadline; the watchdog shuts the socket."""
        connection = self._connection()
        expired = threading.Event()
        opened: list[socket.socket] = []

        def expire() -> None:
            # The connection drops its own reference once the response owns the socket, so the one
            # kept at connect time is the one shut down (which wakes the blocked read in the caller).
            expired.set()
            for sock in (*opened, connection.sock):
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)

        watchdog = threading.Timer(self.timeout, expire)
        watchdog.daemon = True
        watchdog.start()
        try:
            connection.connect()
            if connection.sock is not None:
                opened.append(connection.sock)
            if expired.is_set():
                raise TimeoutError
            connection.request("GET", target, headers=self.headers)
            response = connection.getresponse()
            declared = response.getheader("Content-Length")
            if declared is not None and declared.isdigit() and int(declared) > MAX_ANSWER_BYTES:
                raise _TooLargeError
            body = bytearray()
            while chunk := response.read(65536):
                body += chunk
                if len(body) > MAX_ANSWER_BYTES:
                    raise _TooLargeError
            if expired.is_set():
                raise TimeoutError
            return response.status, response.reason, response.getheader("Location"), bytes(body)
        except (OSError, http.client.HTTPException, ValueError) as error:
            if expired.is_set():
                raise _ExpiredError from None
            raise _UnreachableError(error) from None
        finally:
            watchdog.cancel()
            connection.close()

    def _get(self, path: str, params: dict[str, str]) -> Any:
        target = f"{self.base_path}{path}?{urllib.parse.urlencode(params)}"
        started = time.monotonic()
        try:
            status, reason, location, body = self._exchange(target)
        except _TooLargeError:
            raise PrometheusError(
                "--prometheus", self.url, f"{path} answered more than {MAX_ANSWER_BYTES // 2**20} MiB"
            ) from None
        except _ExpiredError:
            raise PrometheusError(
                "--prometheus",
                self.url,
                f"{path} gave no complete answer within --timeout {self.timeout:g} s "
                f"(stopped after {time.monotonic() - started:.1f} s)",
            ) from None
        except _UnreachableError as error:
            cause = error.args[0] if error.args else error
            reason_text = getattr(cause, "reason", None) or getattr(cause, "strerror", None) or cause
            problem = f"unreachable ({self._untrusted(str(reason_text))})"
            raise PrometheusError("--prometheus", self.url, problem) from None
        if 300 <= status < 400:
            raise PrometheusError(
                "--prometheus",
                self.url,
                f"{path} answered a redirect (HTTP {status}) to {self._untrusted(location or '(nowhere)')}; "
                "redirects are not followed, so the token goes nowhere else: give the final URL",
            )
        if status != 200:
            detail = self._api_error(body) or f"HTTP {status} {self._untrusted(reason)}"
            raise PrometheusError("--prometheus", self.url, f"{path} answered {detail}")
        try:
            document = json.loads(body)
        except ValueError:
            raise ShapeError("--prometheus", self.url, f"{path} did not answer JSON: not a Prometheus API") from None
        if not isinstance(document, dict) or document.get("status") != "success":
            detail = self._api_error(body) or "no status"
            raise PrometheusError("--prometheus", self.url, f"{path} answered {detail}")
        return document.get("data")

    def _shape(self, what: str) -> ShapeError:
        return ShapeError("--prometheus", self.url, f"not a Prometheus answer: {what}")

    def query(self, expr: str) -> list[Sample]:
        """An instant query at the server's current time; an empty list when nothing matched."""
        data = self._get("/api/v1/query", {"query": expr})
        if not isinstance(data, dict) or data.get("resultType") not in ("vector", "scalar"):
            raise self._shape("data.resultType is not vector or scalar")
        result = data.get("result")
        if data["resultType"] == "scalar":
            return [self._sample({}, result)]
        if not isinstance(result, list):
            raise self._shape("data.result is not a list")
        samples = []
        for item in result:
            if not isinstance(item, dict):
                raise self._shape("a series is not an object")
            labels = item.get("metric", {})
            if not isinstance(labels, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
            ):
                raise self._shape("a series' labels are not names to strings")
            samples.append(self._sample(labels, item.get("value")))
        return samples

    def _sample(self, labels: dict[str, str], pair: Any) -> Sample:
        """`[timestamp, "value"]`: Prometheus writes values as strings, NaN and ±Inf included."""
        if not isinstance(pair, list) or len(pair) != 2:
            raise self._shape("a value is not a [time, value] pair")
        at, text = pair
        if isinstance(at, bool) or not isinstance(at, (int, float)) or not math.isfinite(at):
            raise self._shape("a sample's time is not a number")
        if not isinstance(text, str):
            raise self._shape(f"a sample's value is {json.dumps(text)}, not a number written as a string")
        try:
            value = float(text)
        except ValueError:
            raise self._shape(f"a sample's value {self._untrusted(json.dumps(text))} is not a number") from None
        return Sample(dict(labels), value, float(at))

    def targets(self) -> list[dict[str, Any]]:
        """The active scrape targets, each with its `labels` and `scrapeInterval`."""
        data = self._get("/api/v1/targets", {"state": "active"})
        if not isinstance(data, dict):
            raise self._shape("/api/v1/targets' data is not an object")
        active = data.get("activeTargets") or []
        if not isinstance(active, list):
            raise self._shape("activeTargets is not a list")
        for target in active:
            if not isinstance(target, dict) or not isinstance(target.get("labels", {}), dict):
                raise self._shape("an active target is not an object with labels")
            if not isinstance(target.get("scrapeInterval", ""), str):
                raise self._shape("a target's scrapeInterval is not a duration")
        return list(active)

    def _api_error(self, body: bytes) -> str | None:
        try:
            document = json.loads(body)
        except ValueError:
            return None
        if isinstance(document, dict) and "error" in document:
            return self._untrusted(f"{document.get('errorType', 'error')}: {document['error']}")
        return None


class _TooLargeError(Exception):
    pass


class _ExpiredError(Exception):
    pass


class _UnreachableError(Exception):
    pass


def _one_line(text: str) -> str:
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


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
