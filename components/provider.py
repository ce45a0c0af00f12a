"""The one Kubernetes provider every object of the stack is registered with.

Why explicit: pulumi-kubernetes replaces a Secret (delete, then create) when its data changes, unless
its provider sets `enableSecretMutable`; in that moment a pod starting up cannot mount it. The default
provider takes its settings only from the stack's `kubernetes:` config, which the operator would have to
set on every stack; an explicit provider carries it in the program.

Only that setting, on purpose. `enableConfigMapMutable` stays off: the program's ConfigMaps are named
after their content, so new content is a new name, created beside the old one, never an edit in place
that running pods would see half-way. The cluster comes from the environment as for the default provider
(`KUBECONFIG`, or the stack's `kubernetes:kubeconfig`/`kubernetes:context`, which an explicit provider
does not read: set the environment). Server-side apply stays on, the provider's default.

Moving a stack deployed with the default provider onto this one replaces nothing: Pulumi creates this
provider, keeps every object ("same"), and deletes the default provider's record, which deletes nothing
in the cluster (tests/engine/test_provider_move.py counts the steps).
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as kubernetes

PROVIDER_NAME = "synapse-kubernetes"


def kubernetes_provider() -> kubernetes.Provider:
    return kubernetes.Provider(PROVIDER_NAME, enable_secret_mutable=True, opts=pulumi.ResourceOptions())
