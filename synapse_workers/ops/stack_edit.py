"""Change values in a stack file while every byte outside them stays as the operator wrote it.

ruamel.yaml keeps comments and key order, but a dump is its own rendering of the whole document: it
may change line endings, indentation, document markers or quoting elsewhere. So the edit is made on
ruamel's model, and only the lines ruamel's rendering changed are carried over into the original
text, each matched to the identical line of the original. An edit that cannot be matched that way is
refused rather than rewriting lines the operator owns.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from difflib import SequenceMatcher
from typing import Any

import yaml as pyyaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from synapse_workers.ops.files import WriteRefusedError


def _yaml(body: str) -> YAML:
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096
    indent = re.search(r"^config:[ \t]*(?:#.*)?\n(?:[ \t]*(?:#.*)?\n)*( +)\S", body, re.MULTILINE)
    if indent is not None:
        yaml.indent(mapping=len(indent.group(1)))
    if re.match(r"(?:#.*\n|\s*\n)*---", body):
        yaml.explicit_start = True
    return yaml


def _dump(yaml: YAML, document: Any) -> str:
    buffer = io.StringIO()
    yaml.dump(document, buffer)
    return buffer.getvalue()


def edit_stack_text(stack: str, name: str, original: str, edit: Callable[[CommentedMap], None]) -> str:
    """`original` with `edit` applied to its `config:` mapping, changing only the lines it must."""
    bom = "\ufeff" if original.startswith("\ufeff") else ""
    body = original[len(bom) :]
    normalised = body.replace("\r\n", "\n").replace("\r", "\n")
    yaml = _yaml(normalised)
    before = _dump(yaml, yaml.load(normalised) or CommentedMap())
    document = yaml.load(normalised) or CommentedMap()
    config = document.get("config")
    if not isinstance(config, CommentedMap):
        config = CommentedMap()
        document["config"] = config
    edit(config)
    after = _dump(yaml, document)

    def refuse(why: str) -> WriteRefusedError:
        return WriteRefusedError(stack, f"cannot change {name} without rewriting lines it does not change ({why})")

    lines = body.splitlines(keepends=True)
    plain = [line.rstrip("\r\n") for line in lines]
    newline = "\r\n" if "\r\n" in body else "\n"
    rendered_before, rendered_after = before.splitlines(), after.splitlines()
    # Which line of the original each line of ruamel's rendering stands for (identical lines only).
    where: dict[int, int] = {}
    for block in SequenceMatcher(None, rendered_before, plain, autojunk=False).get_matching_blocks():
        for k in range(block.size):
            where[block.a + k] = block.b + k
    edits: list[tuple[int, int, list[str]]] = []
    changes = SequenceMatcher(None, rendered_before, rendered_after, autojunk=False).get_opcodes()
    for tag, i1, i2, j1, j2 in changes:
        if tag == "equal":
            continue
        if i1 < i2:
            if any(i not in where for i in range(i1, i2)):
                raise refuse("the changed lines are written differently in the file")
            start, end = where[i1], where[i1] + (i2 - i1)
            if [where[i] for i in range(i1, i2)] != list(range(start, end)):
                raise refuse("the changed lines are not together in the file")
        elif i1 > 0 and i1 - 1 in where:
            start = end = where[i1 - 1] + 1
        elif i1 in where:
            start = end = where[i1]
        else:
            raise refuse("no unchanged line to add the new ones beside")
        edits.append((start, end, rendered_after[j1:j2]))
    for start, end, new in sorted(edits, reverse=True):
        ending = lines[start][len(plain[start]) :] if start < len(lines) else newline
        if start == len(lines) and lines and not lines[-1].endswith(("\n", "\r")):
            lines[-1] += newline
        lines[start:end] = [text + (ending or newline) for text in new]
    result = bom + "".join(lines)
    if pyyaml.safe_load(result.replace("\r\n", "\n")) != pyyaml.safe_load(after):
        raise refuse("the spliced file would not read as the edited one")
    return result
