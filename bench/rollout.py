"""Rollout benchmark: time to the first progress callback, and Kubernetes requests per rollout.

Run by hand (`python bench/rollout.py`), not as a test. The real kubernetes-asyncio client talks
HTTP to the fake API server of tests/fakes/kubernetes/ on 127.0.0.1, configured through a
kubeconfig file as in production outside a pod, with the service's production poll policy.

  first callback: from calling RolloutService.restart to the "requested" progress callback
                  (the GET and the restart PATCH); target under 1 s.
  requests:       Kubernetes requests one followed rollout costs, for rollouts whose status
                  moves one step per GET (the floor) and on a wall-clock schedule (a real
                  rollout: five status steps, `--step` seconds apart), checked against the
                  fake's own request log.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.integrations.kubernetes import KubernetesClient  # noqa: E402
from bot.services.cluster.polling import PollPolicy  # noqa: E402
from bot.services.cluster.rollouts import (  # noqa: E402
    RolloutConfig,
    RolloutProgress,
    RolloutService,
)
from tests.fakes.kubernetes import FakeKubernetes, Reconcile  # noqa: E402

NAMESPACE = "conductor-e"


async def first_callback_latency(
    service: RolloutService, fake: FakeKubernetes, runs: int
) -> list[float]:
    """Seconds from restart() to the first progress callback, for `runs` restarts."""
    latencies: list[float] = []
    for i in range(runs):
        name = f"bench-{i}"
        fake.add_deployment(name, replicas=2)
        service.config = RolloutConfig(NAMESPACE, rollout_targets=(name,))
        first = asyncio.get_running_loop().create_future()
        started = time.perf_counter()

        async def progress(event: RolloutProgress, first: asyncio.Future[float] = first) -> None:
            if not first.done():
                first.set_result(time.perf_counter())

        # Only the start matters here: stop following once the first callback has come.
        task = asyncio.create_task(service.restart(name, progress, timeout=30))
        latencies.append(await first - started)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return latencies


async def requests_per_rollout(
    service: RolloutService, fake: FakeKubernetes, name: str, step_seconds: float | None
) -> tuple[int, int, float]:
    """(requests the service counted, requests the fake saw, seconds) for one rollout."""
    fake.add_deployment(name, replicas=2, step_seconds=step_seconds)
    service.config = RolloutConfig(NAMESPACE, rollout_targets=(name,))
    seen_before = len(fake.requests)
    started = time.perf_counter()
    result = await service.restart(name, timeout=120)
    return result.requests, len(fake.requests) - seen_before, time.perf_counter() - started


async def flux_requests(service: RolloutService, fake: FakeKubernetes) -> tuple[int, int]:
    fake.add_flux("GitRepository", "conductor-e", reconcile=Reconcile(after_gets=1))
    fake.add_flux(
        "Kustomization",
        "conductor-e",
        source=("GitRepository", "conductor-e", None),
        reconcile=Reconcile(after_gets=2),
    )
    service.config = RolloutConfig(
        NAMESPACE, flux_objects=("kustomization/conductor-e", "gitrepository/conductor-e")
    )
    seen_before = len(fake.requests)
    result = await service.flux_reconcile("kustomization", "conductor-e", with_source=True)
    return result.requests, len(fake.requests) - seen_before


async def main(runs: int, step: float) -> None:
    policy = PollPolicy()
    async with FakeKubernetes(namespace=NAMESPACE) as fake:
        with tempfile.TemporaryDirectory() as tmp:
            kubeconfig = fake.write_kubeconfig(Path(tmp) / "kubeconfig")
            kube = await KubernetesClient.create(NAMESPACE, kubeconfig=kubeconfig)
        service = RolloutService(kube, RolloutConfig(NAMESPACE), poll=policy)
        try:
            print(
                f"poll policy: first {policy.initial}s, x{policy.factor}, at most {policy.maximum}s"
            )
            latencies = await first_callback_latency(service, fake, runs)
            ordered = sorted(latencies)
            p95 = ordered[max(0, round(0.95 * len(ordered)) - 1)]
            print(
                f"first progress callback ({runs} restarts): "
                f"median {statistics.median(latencies) * 1000:.1f} ms, "
                f"p95 {p95 * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms "
                f"(target < 1000 ms: {'met' if max(latencies) < 1 else 'MISSED'})"
            )
            counted, seen, seconds = await requests_per_rollout(service, fake, "floor", None)
            print(
                f"requests per rollout, one status step per GET: {counted} "
                f"(fake saw {seen}) in {seconds:.2f}s"
            )
            for label, each in (("fast", step / 4), ("typical", step)):
                counted, seen, seconds = await requests_per_rollout(service, fake, label, each)
                print(
                    f"requests per rollout, 5 steps {each:g}s apart ({label}): {counted} "
                    f"(fake saw {seen}) in {seconds:.2f}s"
                )
            counted, seen = await flux_requests(service, fake)
            print(f"requests per flux reconcile --with-source: {counted} (fake saw {seen})")
        finally:
            await service.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50, help="restarts timed to first callback")
    parser.add_argument("--step", type=float, default=2.0, help="seconds between status steps")
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.step))
