"""Entry point for `pulumi preview` / `pulumi up`: everything happens in components.program.

The program's layers live in synapse_workers/ (model → synapse → kube → plan → ops); components/ is
the thin Pulumi layer on top."""

from components.program import run

run()
