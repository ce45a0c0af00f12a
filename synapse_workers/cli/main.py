"""`synapse-workers plan|render|scale|recommend|promote`: the capacity plan, the manifests, and changes to them.

Both read `Pulumi.<stack>.yaml` as the Pulumi CLI would. Any bad input ends in one line on stderr and
a non-zero exit, before anything is written.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, NoReturn

import yaml

from synapse_workers.cli.report import plan_json, plan_table
from synapse_workers.kube.budget import check_budget
from synapse_workers.model.errors import ConfigError
from synapse_workers.model.load_figures import LOAD_FIGURES
from synapse_workers.model.settings import load_settings
from synapse_workers.model.stack_config import StackFileError, find_project, read_stack_file
from synapse_workers.ops.files import WriteRefusedError
from synapse_workers.ops.gates import GATE_KEY, refuse_gate_cycle
from synapse_workers.ops.overrides import PIN_FLAG, WHATIF_FLAGS, LoadChange, apply, name_flag, plan_with_flags
from synapse_workers.ops.prometheus import Prometheus, PrometheusError
from synapse_workers.ops.recommend.document import Saved, read_saved, recommendation_json
from synapse_workers.ops.recommend.measure import measure
from synapse_workers.ops.recommend.proposal import recommend
from synapse_workers.ops.recommend.verify import check_shape, verify_saved
from synapse_workers.ops.whatif import compare, whatif_json, whatif_table
from synapse_workers.plan import Plan, build_plan


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def _parse_pin(text: str) -> tuple[str, str]:
    name, sep, replicas = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected CLASS=REPLICAS, got {text!r}")
    return name, replicas


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="synapse-workers", description=__doc__)
    # As `pulumi` spells it, before or after the command: run as if started in DIR.
    cwd_help = "run as if started in DIR (the project is the nearest Pulumi.yaml from there upward)"
    parser.add_argument("-C", "--cwd", metavar="DIR", help=cwd_help)
    cwd = _Parser(add_help=False)
    cwd.add_argument("-C", "--cwd", metavar="DIR", default=argparse.SUPPRESS, help=cwd_help)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, summary in (
        ("plan", "print the capacity plan: replicas per worker class, phase, departures from the guide"),
        ("render", "write every Kubernetes object and every process's Synapse config as YAML"),
    ):
        command = commands.add_parser(name, help=summary, description=summary, parents=[cwd])
        command.add_argument("--stack", required=True, help="stack name: reads Pulumi.<stack>.yaml")
        for figure in LOAD_FIGURES:
            command.add_argument(figure.flag, dest=figure.attr, help=f"instead of synapse:{figure.config_key}")
        if name == "plan":
            command.add_argument("--json", action="store_true", help="print JSON instead of a table")
            for figure in LOAD_FIGURES:
                command.add_argument(
                    figure.whatif_flag, dest=f"to_{figure.attr}", help=f"what-if: compare with this {figure.key}"
                )
        else:
            command.add_argument("--out", type=Path, required=True, help="folder to write into")
    scale = commands.add_parser(
        "scale",
        parents=[cwd],
        help="write new load figures or pins into Pulumi.<stack>.yaml and record why",
        description="write new load figures or pins into Pulumi.<stack>.yaml and append to scaling-history.yaml",
    )
    scale.add_argument("--stack", required=True)
    for figure in LOAD_FIGURES:
        scale.add_argument(figure.flag, dest=figure.attr)
    scale.add_argument(PIN_FLAG, action="append", type=_parse_pin, default=[], metavar="CLASS=REPLICAS")
    scale.add_argument("--reason", help="why: it goes into the scaling history (required unless --from-recommendation)")
    scale.add_argument(
        "--from-recommendation",
        dest="from_recommendation",
        type=Path,
        metavar="FILE",
        help="apply a saved `recommend --json` and record its measurements in the history",
    )
    recommend = commands.add_parser(
        "recommend",
        parents=[cwd],
        help="measure the stack's load in Prometheus and propose the scale change",
        description="measure the stack's load in Prometheus (peak over a window) and propose the scale change",
    )
    recommend.add_argument("--stack", required=True, help="stack name: reads Pulumi.<stack>.yaml")
    recommend.add_argument("--prometheus", required=True, metavar="URL", help="Prometheus base URL")
    recommend.add_argument("--window", default="15m", help="how far back to look for the peak (default 15m)")
    recommend.add_argument("--json", action="store_true", help="print JSON (save it for scale --from-recommendation)")
    recommend.add_argument("--bearer-token-file", dest="bearer_token_file", type=Path, metavar="FILE")
    recommend.add_argument("--ca-bundle", dest="ca_bundle", type=Path, metavar="FILE", help="PEM CAs for https")
    recommend.add_argument("--timeout", type=float, default=10.0, help="seconds per request (default 10)")
    promote = commands.add_parser(
        "promote",
        help="preview and update staging, check it, then prod (Pulumi Automation API; needs the Pulumi CLI)",
        parents=[cwd],
    )
    promote.add_argument("--stacks", nargs="+", default=["staging", "prod"], help="the order (default: staging prod)")
    return parser


def _scale_command(args: argparse.Namespace) -> None:
    from synapse_workers.ops.scale import HISTORY_FILE, scale  # noqa: PLC0415 (ruamel only for this command)

    change = LoadChange.of({f.key: getattr(args, f.attr) for f in LOAD_FIGURES}, tuple(args.pin))
    reason, measured = args.reason, None
    if args.from_recommendation is not None:
        if not change.is_empty() or reason is not None:
            raise UsageError(
                "synapse-workers scale: --from-recommendation takes its figures, pins and reason from the file; "
                f"give none of {', '.join(f.flag for f in LOAD_FIGURES)}, {PIN_FLAG}, --reason with it"
            )
        saved = _saved_recommendation(args)
        change, reason, measured = saved.change, saved.reason, saved.measured
    elif reason is None:
        raise UsageError("synapse-workers scale: the following arguments are required: --reason")
    done = scale(args.project_dir, args.stack, change, reason, datetime.now(UTC), measured)
    sys.stdout.write(whatif_table(done.result))
    print(f"\nwrote Pulumi.{args.stack}.yaml and appended to {HISTORY_FILE}; next: pulumi preview --stack {args.stack}")


def _saved_recommendation(args: argparse.Namespace) -> Saved:
    path: Path = args.from_recommendation
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(
            args.stack, "--from-recommendation", str(path), "a file saved from `recommend --json`", error.strerror or ""
        ) from None
    values, secret_keys = _stack_values(args)
    plan = plan_with_flags(args.stack, values, secret_keys, {})
    check_shape(args.stack, str(path), text)
    saved = read_saved(args.stack, str(path), text, plan)
    verify_saved(args.stack, str(path), text, plan, values, secret_keys)
    return saved


def _recommend_command(args: argparse.Namespace) -> int:
    """Measure and propose; a proposal over the budget is printed whole, then refused (exit 2)."""
    from synapse_workers.cli.recommend_report import recommendation_table  # noqa: PLC0415
    from synapse_workers.ops.scale import HISTORY_FILE  # noqa: PLC0415

    values, secret_keys = _stack_values(args)
    plan = plan_with_flags(args.stack, values, secret_keys, {})
    try:
        prometheus = Prometheus(args.prometheus, args.bearer_token_file, args.ca_bundle, args.timeout)
        measured = measure(args.stack, plan, prometheus, args.window)
    except PrometheusError as error:
        raise ConfigError(
            args.stack, error.flag, error.value, _ALLOWED.get(error.flag, "a working value"), error.problem
        ) from None
    history = _history(args.stack, args.project_dir / HISTORY_FILE)
    rec = recommend(args.stack, plan, values, secret_keys, measured, history)
    if args.json:
        sys.stdout.write(json.dumps(recommendation_json(rec), indent=2, sort_keys=True) + "\n")
    else:
        sys.stdout.write(recommendation_table(rec))
    if rec.refusal is not None:
        print(f"error: the proposal does not fit: {rec.refusal}", file=sys.stderr)
        return 2
    return 0


_ALLOWED = {
    "--prometheus": "the base URL of a reachable Prometheus HTTP API, e.g. http://prometheus.monitoring:9090",
    "--bearer-token-file": "a readable file holding the bearer token on one line",
    "--timeout": "seconds for each whole request, above 0 and at most 300",
    "--ca-bundle": "a readable PEM file of CA certificates",
}


def _history(stack: str, path: Path) -> list[dict[str, Any]]:
    """The scaling history's records; an unreadable one is refused rather than silently ignored."""
    if not path.exists():
        return []
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        raise ConfigError(
            stack, "scaling history", str(path), "the YAML list `scale` appends to", "unreadable"
        ) from None
    return [r for r in loaded or [] if isinstance(r, dict)]


def _stack_values(args: argparse.Namespace) -> tuple[dict[str, str], frozenset[str]]:
    values, secret_keys = read_stack_file(args.stack, args.project_dir / f"Pulumi.{args.stack}.yaml")
    refuse_gate_cycle(args.stack, values.get(GATE_KEY), args.project_dir)
    return values, secret_keys


def _unchecked_plan(stack: str, values: dict[str, str], secret_keys: frozenset[str], named: dict[str, str]) -> Plan:
    """The plan even when it does not fit its budget: `plan` shows it whole, then refuses."""
    try:
        return build_plan(load_settings(stack, values, secret_keys), enforce_budget=False)
    except ConfigError as error:
        raise name_flag(error, named) from None


def budget_refusal(plan: Plan) -> ConfigError | None:
    try:
        check_budget(plan.settings, plan.budget)
    except ConfigError as error:
        return error
    return None


def _plan_command(args: argparse.Namespace, plan: Plan, values: dict[str, str], secret_keys: frozenset[str]) -> int:
    """Print the whole plan (and what-if), then any budget refusal with what would make it fit: exit 2."""
    target = LoadChange.of({f.key: getattr(args, f"to_{f.attr}") for f in LOAD_FIGURES})
    result = None
    refusals = [budget_refusal(plan)]
    if not target.is_empty():
        new_values, named = apply(values, target, WHATIF_FLAGS)
        new_plan = _unchecked_plan(args.stack, new_values, secret_keys, named)
        result = compare(plan, new_plan)
        plan = new_plan
        refusals.append(budget_refusal(plan))
    found = list(dict.fromkeys(str(r) for r in refusals if r is not None))
    if args.json:
        document = plan_json(plan)
        if result is not None:
            document.update(whatif_json(result))
        if found:
            document["refused"] = found
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
    else:
        sys.stdout.write(plan_table(plan) + (whatif_table(result) if result is not None else ""))
    for refusal in found:
        print(f"error: {refusal}", file=sys.stderr)
    return 2 if found else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; `-C DIR` holds only for the command (the caller's folder is restored after)."""
    started_in = os.getcwd()
    try:
        return _main(argv)
    finally:
        os.chdir(started_in)


def _main(argv: Sequence[str] | None) -> int:
    try:
        args = _parser().parse_args(argv)
        if args.cwd is not None:
            try:
                os.chdir(args.cwd)
            except OSError as error:
                raise UsageError(f"synapse-workers: -C/--cwd {json.dumps(args.cwd)}: {error.strerror}") from None
        project = find_project(Path.cwd())
        if project is None:
            raise UsageError(
                f"synapse-workers: no Pulumi.yaml in {Path.cwd()} or any folder above it; "
                "run it in the project's folder, or give -C/--cwd DIR as for pulumi"
            )
        args.project_dir = project
        if args.command == "scale":
            _scale_command(args)
            return 0
        if args.command == "recommend":
            return _recommend_command(args)
        if args.command == "promote":
            from components.program import inline_program  # noqa: PLC0415 (the Pulumi SDK, only for this command)
            from synapse_workers.ops.promote import PromoteError, automation_select, promote  # noqa: PLC0415

            # The stacks of the project found, and the guards reading the backend its Pulumi.yaml names.
            program = inline_program(args.project_dir)
            try:
                promote(args.stacks, select=partial(automation_select, program=program, work_dir=args.project_dir))
            except PromoteError as error:
                print(f"error: promote stopped: {error}", file=sys.stderr)
                return 1
            return 0
        values, secret_keys = _stack_values(args)
        values, named = apply(values, LoadChange.of({f.key: getattr(args, f.attr) for f in LOAD_FIGURES}))
        if args.command == "plan":
            return _plan_command(args, _unchecked_plan(args.stack, values, secret_keys, named), values, secret_keys)
        plan_with_flags(args.stack, values, secret_keys, named)  # render refuses what does not fit first
        # Imported here: the Pulumi SDK is only needed to render, and `plan` should answer at once.
        from synapse_workers.cli.render import RenderOutError, check_out, render_stack, write  # noqa: PLC0415

        try:
            check_out(args.out)
            rendered = render_stack(args.stack, values, secret_keys)
            write(rendered, args.out)
        except RenderOutError as error:
            raise UsageError(f"stack '{args.stack}': {error}; nothing was written") from None
        print(
            f"rendered stack {args.stack}: {len(rendered.manifests)} objects in {args.out / 'manifests'}, "
            f"{len(rendered.processes)} process configs in {args.out / 'synapse'}"
        )
        return 0
    except (UsageError, ConfigError, StackFileError, WriteRefusedError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
