"""cleanroom on Ray Serve: two replicas, tenant-affinity routing, keys in a shared KMS.

    # one machine, local KMS in the shared data dir (use CLEANROOM_KMS=vault + a shared dir for a cluster)
    cleanroom tenant create shop --data-dir /srv/cleanroom-data --json > shop.json
    CLEANROOM_DATA_DIR=/srv/cleanroom-data serve run examples.ray_serve.app:app
    python examples/ray_serve/client.py http://127.0.0.1:8000 shop.json "hello"

Replicas read `CLEANROOM_*` from their environment (`env` below copies the driver's); secrets such as
`CLEANROOM_VAULT_TOKEN` are better set on the nodes than shipped in the deployment.
"""

from __future__ import annotations

import os
from typing import Any

from cleanroom.integrations.ray_serve import cleanroom_app


def build(num_replicas: int = 2) -> Any:
    env = {k: v for k, v in os.environ.items() if k.startswith("CLEANROOM_")}
    return cleanroom_app(
        settings={"models": ["echo"], "device": "auto"},  # {"num_gpus": 1} below for GPU replicas
        env=env,
        num_replicas=num_replicas,
        tenants_per_replica=2,
        ray_actor_options={"num_cpus": 1},
    )


app = build()
