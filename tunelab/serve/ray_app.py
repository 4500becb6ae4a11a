"""`tunelab serve` on Ray Serve: the same ASGI app (routes, limits, continuous batching, metrics) in each replica.

For users who outgrow one machine: Ray Serve runs replicas of the server across a Ray cluster, routes requests
to them and adds or removes replicas with load (``autoscaling_config``). Each replica loads the served runs and
models itself and runs tunelab's app, lifespan included (Ray runs it), so every route behaves as under
`tunelab serve`. Needs the optional extra ``ray`` (``pip install "tunelab[ray]"``).

    from ray import serve
    from tunelab.serve.ray_app import deployment
    serve.run(deployment(["runs/alpaca-lora"], max_replicas=4), route_prefix="/")

or from Ray's CLI: ``serve run tunelab.serve.ray_app:app targets=runs/alpaca-lora max_replicas=4``.
"""

from __future__ import annotations

from typing import Any


def deployment(
    targets: list[str],
    serve_cfg: dict | None = None,
    api_keys: list[str] | None = None,
    min_replicas: int = 1,
    max_replicas: int = 1,
    target_ongoing_requests: float = 16,
    ray_actor_options: dict | None = None,
):
    """A bound Ray Serve application serving ``targets`` (as `tunelab serve` takes them).

    ``serve_cfg``: the ``serve:`` section (host/port/workers are Ray's business and ignored);
    replicas scale between ``min_replicas`` and ``max_replicas`` to keep about ``target_ongoing_requests``
    requests per replica."""
    from ray import serve

    from tunelab.serve import registry
    from tunelab.serve.config import ServeConfig

    registry.parse_items(targets)  # bad names fail here, not in every replica
    cfg = ServeConfig.model_validate(serve_cfg or {})

    @serve.ingress()
    class TunelabServer:
        def __init__(self, targets: list[str], cfg_data: dict, keys: list[str]):
            self.targets, self.cfg, self.keys = targets, ServeConfig.model_validate(cfg_data), keys

        def __serve_build_asgi_app__(self):
            from tunelab.serve.app import build_app

            served = registry.load_all(self.targets, _stderr, self.cfg.backend)
            return build_app(served, self.cfg, self.keys)

    options: dict[str, Any] = {
        "autoscaling_config": {
            "min_replicas": min_replicas,
            "max_replicas": max_replicas,
            "target_ongoing_requests": target_ongoing_requests,
        },
        "max_ongoing_requests": cfg.queue_size + cfg.max_batch_size,
        "ray_actor_options": ray_actor_options or {"num_cpus": cfg.threads or 1},
    }
    return serve.deployment(TunelabServer, name="tunelab", **options).bind(
        list(targets), cfg.model_dump(), list(api_keys or [])
    )


def app(args: dict):
    """Builder for ``serve run tunelab.serve.ray_app:app targets=A,B max_replicas=N [min_replicas=M]``."""
    targets = [t for t in str(args.get("targets", "")).split(",") if t]
    return deployment(
        targets,
        api_keys=[k for k in str(args.get("api_keys", "")).split(",") if k],
        min_replicas=int(args.get("min_replicas", 1)),
        max_replicas=int(args.get("max_replicas", 1)),
    )


def _stderr(msg: str) -> None:
    import sys

    print(msg, file=sys.stderr, flush=True)
