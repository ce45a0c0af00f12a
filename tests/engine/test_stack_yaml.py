"""Stack files read as the Pulumi CLI reads them (#19 item 2): the reader `plan`, `render` and `scale` use
(synapse_workers/model/stack_yaml.py) against the CLI built here (`pulumi config --json`, what it hands
the program), case by case and on a seeded random corpus of the scalars where YAML readers differ.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
from pathlib import Path

import pytest
import yaml

from synapse_workers.model.stack_config import StackFileError, read_stack_file
from tests.engine.conftest import BIN, PASSPHRASE, pulumi_cli_or_skip

STACK = "t"


class Cli:
    """One project and stack in a file backend; `config(text)` writes the stack file and asks the CLI."""

    def __init__(self, root: Path) -> None:
        self.project = root / "project"
        self.project.mkdir()
        (self.project / "Pulumi.yaml").write_text("name: synapse-workers\nruntime: python\n")
        (root / "state").mkdir()
        (root / "home").mkdir()
        self.env = {
            **os.environ,
            "PULUMI_BACKEND_URL": (root / "state").as_uri(),
            "PULUMI_HOME": str(root / "home"),
            "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
            "PULUMI_SKIP_UPDATE_CHECK": "true",
        }
        self.run("stack", "init", STACK)
        self.path = self.project / f"Pulumi.{STACK}.yaml"

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "pulumi"), *args, "--non-interactive"],
            cwd=self.project,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )

    def config(self, text: str) -> dict[str, str] | str:
        """What the CLI passes the program for `text`, or its error."""
        self.path.write_text(text)
        done = self.run("config", "--json", "--show-secrets", "--stack", STACK)
        if done.returncode != 0:
            return done.stderr.strip()
        return {key: entry["value"] for key, entry in json.loads(done.stdout).items()}

    def agree(self, text: str) -> dict[str, str]:
        """The values the CLI passes for `text`; asserts it reads the file and the reader gives the same."""
        expected = self.config(text)
        assert isinstance(expected, dict), expected
        assert self.ours() == expected
        return expected

    def ours(self) -> dict[str, str] | str:
        try:
            return read_stack_file(STACK, self.path)[0]
        except StackFileError as error:
            return str(error)


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Cli:
    pulumi_cli_or_skip("the stack-file comparison")
    return Cli(tmp_path_factory.mktemp("stack-yaml"))


def stack_file(entries: dict[str, str]) -> str:
    return "config:\n" + "".join(f"  synapse:{key}: {value}\n" for key, value in entries.items())


SCALARS = {
    "on": "on", "off": "off", "yes": "yes", "no": "no", "y": "y", "sexagesimal": "8:20", "octal11": "0777",
    "octal12": "0o17", "hex": "0x1F", "binary": "0b101", "underscores": "1_000", "exp": "1e3", "dot": ".5",
    "float1": "1.0", "plus": "+12", "minuszero": "-0", "bigint": "18446744073709551615", "eight": "08",
    "tilde": "~", "null": "null", "empty": "", "true": "True", "TRUE": "TRUE", "quoted": '"5000"',
    "json": "'{\"x\": 1}'", "version": "1.2.3", "neg": "-5", "negfloat": "-0.25", "huge": "1e300",
    "tiny": "1e-7", "small": "0.000001", "small2": "1.5e-5", "e20": "1e20", "e21": "1e21",
    "long": "123456789012345678901234", "ip": "10.0.0.1", "ratio": "1:2:3", "word": "staging",
}  # fmt: skip
"""Scalars whose meaning differs between YAML 1.1 (PyYAML's default) and yaml.v3, or in how Go prints."""


def test_scalars_as_the_cli_passes_them(cli: Cli) -> None:
    expected = cli.agree(stack_file(SCALARS))
    assert expected["synapse:on"] == "on" and expected["synapse:sexagesimal"] == "8:20"  # not true, not 500


def test_objects_as_the_cli_passes_them(cli: Cli) -> None:
    text = (
        "config:\n"
        "  synapse:workers:\n"
        "    synchrotron: {minReplicas: 2, maxReplicas: 0x10, on: yes, 8:20: 1.0, note: '<a&b>'}\n"
        "    event-persister:\n"
        "      replicas: 4\n"
        "      resources: {requests: {cpu: 500m}}\n"
        "  synapse:list: [1, 1e3, ~, true, 'x', 0777]\n"
        '  synapse:jsonText: \'{"synchrotron": {"replicas": 3}}\'\n'
    )
    cli.agree(text)


def test_aliases_and_merge_keys_as_the_cli_follows_them(cli: Cli) -> None:
    text = (
        "base: &small {requests: {cpu: 20m}}\n"
        "config:\n"
        "  synapse:main: {resources: *small}\n"
        "  synapse:workers:\n"
        "    synchrotron: {<<: {replicas: 2, minReplicas: 2}, replicas: 3}\n"
    )
    cli.agree(text)


@pytest.mark.parametrize(
    ("name", "text", "ours"),
    [
        ("duplicate", "config:\n  synapse:ccu: 1\n  synapse:ccu: 2\n", "already defined at line 2"),
        ("nested duplicate", "config:\n  synapse:main: {a: 1, a: 2}\n", "already defined"),
        ("infinity", "config:\n  synapse:ccu: .inf\n", "cannot pass it on"),
        (
            "alias bomb",
            "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
            "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
            "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
            "config:\n  synapse:main: *f\n",
            "aliases expand past",
        ),
    ],
)
def test_what_the_cli_refuses_is_refused_in_one_line(cli: Cli, name: str, text: str, ours: str) -> None:
    theirs = cli.config(text)
    assert isinstance(theirs, str) and "error" in theirs, (name, theirs)
    mine = cli.ours()
    assert isinstance(mine, str) and ours in mine and "\n" not in mine, (name, mine)


def test_an_unquoted_date_is_refused_where_the_cli_would_pass_go_text(cli: Cli) -> None:
    """The one deliberate difference: the CLI turns it into Go's timestamp text, which no setting takes."""
    theirs = cli.config("config:\n  synapse:note: 2001-12-14\n")
    assert theirs == {"synapse:note": "2001-12-14 00:00:00 +0000 UTC"}
    mine = cli.ours()
    assert isinstance(mine, str) and "quote it" in mine
    assert cli.config('config:\n  synapse:note: "2001-12-14"\n') == {"synapse:note": "2001-12-14"} == cli.ours()


ALPHABET = "0123456789" * 4 + "+-._:eExXoObB" + "aynNtTfFlu~"
WORDS = ("on", "off", "yes", "no", "y", "n", "true", "False", "NULL", "null", "~", "0x", "0o", "0b", "inf")


def token(rng: random.Random) -> str:
    draw = rng.random()
    if draw < 0.2:
        return rng.choice(WORDS) + rng.choice(("", "", "", "1", "_0", ":5"))
    if draw < 0.35:  # YAML 1.1's base 60
        return f"{rng.choice(('', '-', '+'))}{rng.randint(0, 99)}:{rng.randint(0, 59):02d}"
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 7)))


def plain(text: str) -> bool:
    """Leave out what is not a plain scalar in flow or block context, or is a date (refused on purpose)."""
    if text[0] in "-:?" and (len(text) == 1 or not (text[1].isalnum() or text[1] == ".")):
        return False
    if text.endswith(":") or ": " in text or text[0] in ":?":
        return False
    return not (len(text) >= 8 and text[:4].isdigit() and text[4] == "-")


def test_a_seeded_random_corpus_reads_as_the_cli_reads_it(cli: Cli) -> None:
    rng = random.Random(20261201)
    tokens = sorted({t for t in (token(rng) for _ in range(600)) if plain(t)})
    assert len(tokens) > 300
    entries = {f"k{index:03d}": value for index, value in enumerate(tokens)}
    nested = "{" + ", ".join(f"n{index:03d}: {value}" for index, value in enumerate(tokens)) + "}"
    text = stack_file(entries) + f"  synapse:nested: {nested}\n"
    expected = cli.config(text)
    if isinstance(expected, str):  # a token both readers refuse: narrow it down, then compare the rest
        pytest.fail(f"the CLI refused the corpus: {expected[:500]}")
    mine = cli.ours()
    assert isinstance(mine, dict), mine
    differ = {k: (expected[k], mine.get(k)) for k in expected if mine.get(k) != expected[k]}
    assert not differ, list(differ.items())[:10]
    # The corpus reaches where readers part: PyYAML's own YAML 1.1 reading differs on many of its tokens.
    yaml11 = [t for i, t in enumerate(tokens) if old_text(t) != expected[f"synapse:k{i:03d}"]]
    assert len(yaml11) > 20, yaml11


def old_text(token: str) -> str:
    """How the reader before this one (PyYAML's safe_load, Python's str) passed a scalar on."""
    try:
        value = yaml.safe_load(f"v: {token}\n")["v"]
    except yaml.YAMLError:
        return "<refused>"
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)
