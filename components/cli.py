"""`python -m components plan|render`: the capacity plan and the manifests, without an engine or cluster.

Both read `Pulumi.<stack>.yaml` as the Pulumi CLI would. Any bad input ends in one line on stderr and
a non-zero exit, before anything is written.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from components.errors import ConfigError
from components.plan import Plan, build_plan
from components.report import plan_json, plan_table
from components.settings import NAMESPACE, load_settings
from components.stack_config import PROJECT_DIR, StackFileError, read_stack_file

OVERRIDES = {"ccu": "ccu", "messages_per_second": "messagesPerSecond"}
"""Command-line flags that stand in for a stack setting, by argparse dest → config key."""


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m components", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, summary in (
        ("plan", "print the capacity plan: replicas per worker class, phase, departures from the guide"),
        ("render", "write every Kubernetes object and every process's Synapse config as YAML"),
    ):
        command = commands.add_parser(name, help=summary, description=summary)
        command.add_argument("--stack", required=True, help="stack name: reads Pulumi.<stack>.yaml")
        command.add_argument("--ccu", help="concurrent users, instead of synapse:ccu")
        command.add_argument(
            "--messages-per-second", dest="messages_per_second", help="instead of synapse:messagesPerSecond"
        )
        command.add_argument("--project-dir", type=Path, default=PROJECT_DIR, help=argparse.SUPPRESS)
        if name == "plan":
            command.add_argument("--json", action="store_true", help="print JSON instead of a table")
        else:
            command.add_argument("--out", type=Path, required=True, help="folder to write into")
    return parser


def _config(args: argparse.Namespace) -> tuple[dict[str, str], frozenset[str], dict[str, str]]:
    values, secret_keys = read_stack_file(args.stack, args.project_dir / f"Pulumi.{args.stack}.yaml")
    flags: dict[str, str] = {}
    for dest, key in OVERRIDES.items():
        given = getattr(args, dest)
        if given is not None:
            values[f"{NAMESPACE}:{key}"] = given
            flags[f"{NAMESPACE}:{key}"] = "--" + dest.replace("_", "-")
    return values, secret_keys, flags


def _plan(args: argparse.Namespace) -> tuple[Plan, dict[str, str], frozenset[str]]:
    values, secret_keys, flags = _config(args)
    try:
        return build_plan(load_settings(args.stack, values, secret_keys)), values, secret_keys
    except ConfigError as error:
        if error.key in flags:
            raise ConfigError(
                error.stack, f"{flags[error.key]} (in place of {error.key})", error.value, error.allowed, error.problem
            ) from None
        raise


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        plan, values, secret_keys = _plan(args)
        if args.command == "plan":
            sys.stdout.write(json.dumps(plan_json(plan), indent=2) + "\n" if args.json else plan_table(plan))
            return 0
        # Imported here: the Pulumi SDK is only needed to render, and `plan` should answer at once.
        from components.render import render_stack, write  # noqa: PLC0415

        rendered = render_stack(args.stack, values, secret_keys)
        write(rendered, args.out)
        print(
            f"rendered stack {args.stack}: {len(rendered.manifests)} objects in {args.out / 'manifests'}, "
            f"{len(rendered.processes)} process configs in {args.out / 'synapse'}"
        )
        return 0
    except (UsageError, ConfigError, StackFileError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
