"""The servlets one Synapse process registers, listed by Synapse's own start-up code.

Run as `python -m tests.e2e.servlets --config <process config> --out <json file>` (a subprocess per
process: Synapse keeps process-global state, such as its metrics registry and the client servlet groups,
so two homeservers in one interpreter would see each other's registrations).

Why this way: the routing audit needs to know which (method, path pattern) pairs a worker type serves,
and any hand-written copy of `synapse/app/generic_worker.py`'s listener code would drift from it. So
this builds the process exactly as Synapse does (`load_config`, `create_homeserver`, `setup` from
`synapse.app.generic_worker`, or from `synapse.app.homeserver` for main) and then calls the homeserver's
own `start_listening()`, which builds every listener resource (`GenericWorkerServer._listen_http`,
`SynapseHomeServer._configure_named_resource`). Every servlet reaches a resource through the public
`JsonResource.register_paths`, which is recorded on its way through. The only change to the process's
config: HTTP listeners bind port 0 and other listeners are dropped, so nothing collides with the
running process of the same name; the database (through PgBouncer) and Redis are the real ones.

Resources that are not servlet tables (`/health`, `/.well-known`, `/_synapse/client/*`, static files)
appear as mounts only: the audit treats a path under one of them as served by that resource.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from re import Pattern
from types import ModuleType
from typing import Any

import yaml
from synapse.app import generic_worker, homeserver
from synapse.http.server import JsonResource


def listing_config(text: str) -> dict[str, Any]:
    """The process's config with HTTP listeners on port 0 and no other listeners (metrics, manhole)."""
    config: dict[str, Any] = yaml.safe_load(text)
    for key in ("listeners", "worker_listeners"):
        if key in config:
            config[key] = [dict(listener, port=0) for listener in config[key] if listener.get("type") == "http"]
    return config


def record_registrations(build: Callable[[ModuleType], None], app: ModuleType) -> dict[str, Any]:
    """What `build` registers: every `JsonResource.register_paths` call (one entry per path pattern,
    in registration order, which is Synapse's matching order within a resource) and every resource the
    app mounts through `create_resource_tree` (one tree per HTTP listener, prefix to resource), so a
    pattern registered on a resource mounted elsewhere (main's `ClientRestResource` also takes some
    `/_synapse/admin` servlets) is not mistaken for a served one."""
    registrations: list[dict[str, Any]] = []
    trees: list[list[dict[str, Any]]] = []
    original_register = JsonResource.register_paths
    original_tree = app.create_resource_tree

    def recording(
        self: Any, method: str, path_patterns: Iterable[Pattern[str]], callback: Any, servlet_classname: str
    ) -> None:
        patterns = list(path_patterns)
        # Federation callbacks are wrapped (functools.wraps); the servlet is the bound method's owner.
        servlet = getattr(getattr(callback, "__wrapped__", callback), "__self__", None)
        # Synapse's own marker for methods a servlet refuses on workers (`rest/client/push_rule.py`).
        denied = method in getattr(type(servlet), "WORKERS_DENIED_METHODS", ())
        for pattern in patterns:
            registrations.append(
                {
                    "resource_id": id(self),
                    "method": method,
                    "pattern": pattern.pattern,
                    "servlet": servlet_classname,
                    "workers_denied": denied,
                }
            )
        original_register(self, method, patterns, callback, servlet_classname)

    def mounting(desired_tree: dict[str, Any], root_resource: Any) -> Any:
        trees.append(
            [
                {"prefix": prefix, "resource_id": id(resource), "resource": type(resource).__name__}
                for prefix, resource in desired_tree.items()
            ]
        )
        return original_tree(desired_tree, root_resource)

    setattr(JsonResource, "register_paths", recording)  # noqa: B010 (mypy refuses assigning to a method)
    setattr(app, "create_resource_tree", mounting)  # noqa: B010
    try:
        build(app)
    finally:
        setattr(JsonResource, "register_paths", original_register)  # noqa: B010
        setattr(app, "create_resource_tree", original_tree)  # noqa: B010
    return {"listeners": trees, "registrations": registrations}


def build_worker(app: ModuleType, config_path: str) -> None:
    """Create, set up and start listening as `synapse.app.generic_worker.main` does."""
    config = app.load_config(["-c", config_path])
    hs = app.create_homeserver(config)
    app.setup(hs)
    hs.start_listening()


def build_main(app: ModuleType, config_path: str) -> None:
    """Create, set up and start listening as `synapse.app.homeserver.main` does."""
    config = app.load_or_generate_config(["-c", config_path])
    hs = app.create_homeserver(config)
    app.setup(hs)
    hs.start_listening()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True, help="the process's config file, as the e2e suite runs it")
    parser.add_argument("--out", required=True, help="where to write the registrations (JSON)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="servlets-") as tmp:
        config_path = Path(tmp) / "listing.yaml"
        config_path.write_text(yaml.safe_dump(listing_config(Path(args.config).read_text())))
        if yaml.safe_load(config_path.read_text()).get("worker_app"):
            listed = record_registrations(lambda app: build_worker(app, str(config_path)), generic_worker)
        else:
            listed = record_registrations(lambda app: build_main(app, str(config_path)), homeserver)
    Path(args.out).write_text(json.dumps(listed, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
