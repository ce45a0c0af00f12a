"""Sample request paths generated from a path regex: the routing table's and Synapse's own.

The route audit must not keep its own list of paths to try (a list would drift from the table it
checks), so it derives them from the patterns: one sample per combination of the pattern's alternatives
and optional parts, so `(api/v1|r0|v3|unstable)` gives four paths and `(/|$)` two. Only the regex syntax
the routing table and Synapse's servlet patterns use is understood (anchors, literals and escapes,
groups with `|` and `?P<name>`, `?` on groups, `.`/`[...]` with `*`, `+` or `?`); anything else raises,
so a new construct in either cannot be sampled wrongly without a failure.

Each sample comes with its branch: the pattern with every alternative fixed to the one sampled, still a
regex (`.*` stays `.*`). The audit uses it to find which of Synapse's paths one alternative of a route
covers when the route is a prefix (no `$`).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

FILLERS = ("x", "a", "0", "_", ".", "-")
"""Text tried, in order, for a repeated character class or `.`: the first the class accepts is used."""
MAX_SAMPLES = 64
"""More combinations than this in one pattern means the pattern is not what this module expects."""


@dataclass(frozen=True)
class Sample:
    path: str
    """A path the pattern matches."""
    branch: str
    """The pattern with every alternative and optional part fixed as in `path`, as a regex."""

    def is_prefix(self) -> bool:
        """Whether the branch also takes longer paths (no end anchor): then `path` names a prefix."""
        return re.search(self.branch, self.path + "/more") is not None


class UnsupportedPatternError(ValueError):
    pass


@dataclass
class _Parser:
    text: str
    pos: int = 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def take(self) -> str:
        char = self.peek()
        if not char:
            raise UnsupportedPatternError(f"unexpected end of {self.text!r}")
        self.pos += 1
        return char

    def alternation(self) -> list[tuple[str, str]]:
        options = self.sequence()
        while self.peek() == "|":
            self.pos += 1
            options = options + self.sequence()
        return options

    def sequence(self) -> list[tuple[str, str]]:
        parts: list[list[tuple[str, str]]] = []
        while self.peek() not in ("", "|", ")"):
            parts.append(self.quantified())
        combined: list[tuple[str, str]] = [("", "")]
        for part in parts:
            combined = [(a + b, ra + rb) for (a, ra), (b, rb) in itertools.product(combined, part)]
            if len(combined) > MAX_SAMPLES:
                raise UnsupportedPatternError(f"{self.text!r} has more than {MAX_SAMPLES} combinations")
        return combined

    def quantified(self) -> list[tuple[str, str]]:
        start = self.pos
        char = self.peek()
        if char == "(":
            options = self.group()
            if self.peek() in ("*", "+"):
                raise UnsupportedPatternError(f"repeated group in {self.text!r}")
            if self.peek() == "?":
                self.pos += 1
                return [("", ""), *options]
            return options
        if char in ("^", "$"):
            self.pos += 1
            return [("", char)]
        if char in ("*", "+", "?", "{"):
            raise UnsupportedPatternError(f"quantifier without an atom at {start} in {self.text!r}")
        if char == "[":
            atom = self.char_class()
        elif char == "\\":
            self.pos += 1
            escaped = self.take()
            if escaped.isalnum() and escaped not in "w":
                raise UnsupportedPatternError(f"escape \\{escaped} in {self.text!r}")
            atom = "\\" + escaped
        else:
            atom = self.take()
        quantifier = self.peek() if self.peek() in ("*", "+", "?") else ""
        self.pos += len(quantifier)
        if self.peek() in ("*", "+", "?", "{"):
            raise UnsupportedPatternError(f"stacked quantifier in {self.text!r}")
        regex = atom + quantifier
        if quantifier == "":
            return [(self.fill(atom, literal=True), regex)]
        if quantifier == "?":
            return [("", regex), (self.fill(atom, literal=True), regex)]
        return [(self.fill(atom, literal=False), regex)]

    def group(self) -> list[tuple[str, str]]:
        self.pos += 1  # "("
        if self.text.startswith("?P<", self.pos):
            self.pos = self.text.index(">", self.pos) + 1
        elif self.text.startswith("?:", self.pos):
            self.pos += 2
        elif self.peek() == "?":
            raise UnsupportedPatternError(f"group extension in {self.text!r}")
        options = self.alternation()
        if self.take() != ")":
            raise UnsupportedPatternError(f"unbalanced group in {self.text!r}")
        return [(sample, f"(?:{regex})") for sample, regex in options]

    def char_class(self) -> str:
        end = self.text.find("]", self.pos + 2)  # a "]" right after "[" or "[^" would be a member
        if end < 0:
            raise UnsupportedPatternError(f"unterminated class in {self.text!r}")
        atom = self.text[self.pos : end + 1]
        self.pos = end + 1
        return atom

    def fill(self, atom: str, literal: bool) -> str:
        """What a sample holds for one atom: the character itself for a literal (an unescaped `.` in
        `org.matrix` stands for itself), else the first filler the atom accepts."""
        if literal and not atom.startswith("[") and not (atom.startswith("\\") and atom[1].isalnum()):
            return atom[1:] if atom.startswith("\\") else atom
        for filler in FILLERS:
            if re.fullmatch(atom, filler):
                return filler
        raise UnsupportedPatternError(f"no filler for {atom!r} in {self.text!r}")


def samples(pattern: str) -> list[Sample]:
    """One sample per combination of alternatives and optional parts in `pattern`, in pattern order."""
    parser = _Parser(pattern)
    options = parser.alternation()
    if parser.pos != len(pattern):
        raise UnsupportedPatternError(f"unbalanced ')' in {pattern!r}")
    seen: dict[str, Sample] = {}
    for path, branch in options:
        sample = Sample(path, branch)
        if re.search(pattern, path) is None or re.search(branch, path) is None:
            raise UnsupportedPatternError(f"sample {path!r} does not match {pattern!r}")
        seen.setdefault(path, sample)
    return list(seen.values())
