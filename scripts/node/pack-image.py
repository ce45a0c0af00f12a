#!/usr/bin/env python3
"""Packs a root filesystem folder into a one-layer image tarball in `docker save` form (manifest.json, an
image config JSON and one layer tar, each named by its sha256), which `ctr -n k8s.io images import` accepts.
Why: the node has no registry, and this needs nothing but Python's standard library and GNU tar.

Usage: pack-image.py ROOTFS OUT.tar --tag REF [--user U] [--workdir D] [--entrypoint JSON] [--cmd JSON]
                     [--env K=V ...] [--stop-signal SIG] [--port 8008/tcp ...]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("rootfs")
    p.add_argument("out")
    p.add_argument("--tag", required=True)
    p.add_argument("--user", default="")
    p.add_argument("--workdir", default="/")
    p.add_argument("--entrypoint", default="null")
    p.add_argument("--cmd", default="null")
    p.add_argument("--env", action="append", default=[])
    p.add_argument("--stop-signal", default="")
    p.add_argument("--port", action="append", default=[])
    a = p.parse_args()

    with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(a.out))) as tmp:
        layer = os.path.join(tmp, "layer.tar")
        # Numeric owners, sorted names and a fixed mtime-free order so one rootfs packs the same way twice;
        # device nodes are left out (the runtime mounts its own /dev).
        subprocess.run(
            [
                "tar",
                "--numeric-owner",
                "--sort=name",
                "--xattrs",
                "--exclude=./dev/*",
                "--exclude=./proc/*",
                "--exclude=./sys/*",
                "-C",
                a.rootfs,
                "-cf",
                layer,
                ".",
            ],
            check=True,
        )
        layer_digest = sha256_file(layer)
        config: dict = {
            "architecture": "amd64",
            "os": "linux",
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(0)),
            "config": {
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", *a.env],
                "WorkingDir": a.workdir,
                "Entrypoint": json.loads(a.entrypoint),
                "Cmd": json.loads(a.cmd),
            },
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_digest}"]},
        }
        if a.user:
            config["config"]["User"] = a.user
        if a.stop_signal:
            config["config"]["StopSignal"] = a.stop_signal
        if a.port:
            config["config"]["ExposedPorts"] = {port: {} for port in a.port}
        config_bytes = json.dumps(config, sort_keys=True).encode()
        config_digest = hashlib.sha256(config_bytes).hexdigest()
        manifest = [{"Config": f"{config_digest}.json", "RepoTags": [a.tag], "Layers": [f"{layer_digest}/layer.tar"]}]

        out_tmp = a.out + ".tmp"
        with tarfile.open(out_tmp, "w") as out:

            def add_bytes(name: str, data: bytes) -> None:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mode = 0o644
                out.addfile(info, fileobj=io.BytesIO(data))

            add_bytes(f"{config_digest}.json", config_bytes)
            out.add(layer, arcname=f"{layer_digest}/layer.tar")
            add_bytes("manifest.json", json.dumps(manifest).encode())
        os.replace(out_tmp, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
