"""Everything the program shows a user for a corpus of stacks, written to one folder for comparison.

Run as `python tests/render_corpus.py PROJECT OUT`: it imports `synapse_workers` from PROJECT (a copy of
some commit's tree), copies the corpus stack files beside PROJECT's own, and writes, per stack, `plan`'s
table and JSON, a what-if, `render`'s files and each command's exit code and messages. Two runs, on two
commits, that give identical folders show a change that altered nothing a user or the cluster sees.

It drives the command line's `main` (the one interface every commit shares) in one process, so the
imports are paid once per run, not once per command.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import sys
from pathlib import Path

CORPUS = Path(__file__).resolve().parent / "data" / "render-corpus"
SHIPPED = ("staging", "prod")
WHATIFS = (("--to-ccu", "800"), ("--to-ccu", "9000"))


def corpus_stacks() -> tuple[str, ...]:
    extra = sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in CORPUS.glob("Pulumi.*.yaml"))
    return (*SHIPPED, *extra)


def commands(stack: str) -> dict[str, list[str]]:
    runs = {
        "plan.txt": ["plan", "--stack", stack],
        "plan.json": ["plan", "--stack", stack, "--json"],
        "render.txt": ["render", "--stack", stack, "--out", f"render/{stack}"],
    }
    for flag, value in WHATIFS:
        runs[f"whatif-{value}.txt"] = ["plan", "--stack", stack, flag, value]
        runs[f"whatif-{value}.json"] = ["plan", "--stack", stack, flag, value, "--json"]
    return runs


def main(project: Path, out: Path) -> None:
    for stack_file in CORPUS.glob("Pulumi.*.yaml"):
        shutil.copyfile(stack_file, project / stack_file.name)
    sys.path.insert(0, str(project))
    # The commands find the project from the current folder, as pulumi does; render's --out is relative
    # to it, so its message reads the same on every commit. The renders move into OUT at the end.
    os.chdir(project)
    from synapse_workers.cli.main import main as cli  # noqa: PLC0415 (from PROJECT, once sys.path names it)

    for stack in corpus_stacks():
        (out / stack).mkdir(parents=True, exist_ok=True)
        for name, argv in commands(stack).items():
            stdout, stderr = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
                code = cli(argv)
            text = f"exit {code}\n--- stdout\n{stdout.getvalue()}--- stderr\n{stderr.getvalue()}"
            (out / stack / name).write_text(text, encoding="utf-8")
    shutil.move(project / "render", out / "render")


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve())
