"""The README's promises that code can check: the side-by-side sizing table and the two commands."""

from __future__ import annotations

import re

from synapse_workers.model.sizing import size_all
from synapse_workers.model.stack_config import PROJECT_DIR
from tests.conftest import settings_for

README = (PROJECT_DIR / "README.md").read_text()


def test_side_by_side_table_matches_the_code() -> None:
    header = next(line for line in README.splitlines() if line.startswith("| class | 100 CCU"))
    ccus = [int(c.strip().replace(",", "").removesuffix(" CCU")) for c in header.strip("|").split("|")[1:]]
    rows = re.findall(r"^\| ([a-z-]+) \| (\d+ / \d+(?: \| \d+ / \d+)*) \|$", README, re.MULTILINE)
    assert len(rows) == 8
    for name, cells in rows:
        for ccu, cell in zip(ccus, cells.split(" | "), strict=True):
            formula, table = (int(x) for x in cell.split(" / "))
            by_formula = {s.spec.name: s.replicas for s in size_all(settings_for(ccu=ccu))[1]}
            by_table = {s.spec.name: s.replicas for s in size_all(settings_for(ccu=ccu, sizing="guide-table"))[1]}
            assert (formula, table) == (by_formula[name], by_table[name]), (name, ccu)


def test_first_screen_has_exactly_the_two_commands() -> None:
    first_screen = README.split("---", 1)[0]
    commands = re.findall(r"^make [^\n]+", first_screen, re.MULTILINE)
    assert [c.split("#")[0].strip() for c in commands] == ["make plan STACK=prod", "make test"]
    makefile = (PROJECT_DIR / "Makefile").read_text()
    assert re.search(r"^plan:", makefile, re.MULTILINE) and re.search(r"^test:", makefile, re.MULTILINE)
    assert "make test" in (PROJECT_DIR / ".ci" / "run").read_text()
    assert "scripts/system-deps.sh" in makefile
