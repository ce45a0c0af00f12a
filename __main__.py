"""Entry point for `pulumi preview` / `pulumi up`: everything happens in components.program."""

from components.program import run

run()
