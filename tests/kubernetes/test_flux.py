"""Flux: reconcile as `flux reconcile` does, wait for the request to be handled, show status."""

from __future__ import annotations

import pytest

from bot.errors import InvalidInput
from bot.integrations.kubernetes import (
    FORCE_AT,
    REQUESTED_AT,
    RESET_AT,
    KubernetesForbidden,
)
from bot.services.cluster.flux import (
    FluxProgress,
    FluxSuspended,
    ReconcileFailed,
    ReconcileTimedOut,
)
from bot.services.cluster.rollouts import NotAllowed, RolloutService
from tests.fakes.kubernetes import RFC3339, FakeKubernetes, Reconcile
from tests.kubernetes.conftest import NAMESPACE

KS_PATH = f"/apis/kustomize.toolkit.fluxcd.io/v1/namespaces/{NAMESPACE}/kustomizations/conductor-e"
HR_PATH = f"/apis/helm.toolkit.fluxcd.io/v2/namespaces/{NAMESPACE}/helmreleases/conductor-e"
GIT_PATH = f"/apis/source.toolkit.fluxcd.io/v1/namespaces/{NAMESPACE}/gitrepositories/conductor-e"
GIT_SOURCE = ("GitRepository", "conductor-e", None)


class Recorder:
    def __init__(self) -> None:
        self.events: list[FluxProgress] = []

    async def __call__(self, event: FluxProgress) -> None:
        self.events.append(event)


async def test_reconcile_waits_for_the_request_to_be_handled_and_reports_the_revision(
    fake: FakeKubernetes, service: RolloutService
) -> None:
    fake.add_flux(
        "Kustomization",
        "conductor-e",
        source=GIT_SOURCE,
        reconcile=Reconcile(after_gets=2, revision="main@sha1:2222222"),
    )
    progress = Recorder()

    result = await service.flux_reconcile("kustomization", "conductor-e", progress=progress)

    patches = fake.requests_to("PATCH")
    assert [p.path for p in patches] == [KS_PATH]
    assert patches[0].content_type == "application/merge-patch+json"
    assert patches[0].body == {"metadata": {"annotations": {REQUESTED_AT: result.token}}}
    assert RFC3339.match(result.token)
    # Two GETs still showed it reconciling; the third showed the request handled.
    after_patch = fake.requests[fake.requests.index(patches[0]) + 1 :]
    assert [r.method for r in after_patch] == ["GET", "GET", "GET"]
    assert result.object.last_handled_reconcile_at == result.token
    assert result.object.ready is True
    assert result.revision == "main@sha1:2222222"
    assert result.message == "Applied revision: main@sha1:2222222"
    assert result.source is None
    assert result.requests == len(fake.requests) == 5
    assert progress.events[0].phase == "requested"
    assert progress.events[-1].phase == "ready"
    assert progress.events[-1].revision == "main@sha1:2222222"
    assert {e.phase for e in progress.events[1:-1]} <= {"waiting"}


async def test_with_source_reconciles_the_git_repository_first(
    fake: FakeKubernetes, service: RolloutService
) -> None:
    fake.add_flux("GitRepository", "conductor-e", reconcile=Reconcile(revision="main@sha1:3333333"))
    fake.add_flux(
        "Kustomization",
        "conductor-e",
        source=GIT_SOURCE,
        reconcile=Reconcile(revision="main@sha1:3333333"),
    )
    progress = Recorder()

    result = await service.flux_reconcile(
        "kustomization", "conductor-e", with_source=True, progress=progress
    )

    assert [(kind, name) for kind, name, _ in fake.reconcile_requests] == [
        ("GitRepository", "conductor-e"),
        ("Kustomization", "conductor-e"),
    ]
    # The Kustomization was annotated only after a GET showed the source's request handled.
    git_token = fake.reconcile_requests[0][2][REQUESTED_AT]
    ks_patch = fake.requests_to("PATCH", KS_PATH)[0]
    git_gets = [r for r in fake.requests_to("GET", GIT_PATH) if r.at <= ks_patch.at]
    assert len(git_gets) >= 2
    assert result.source is not None
    assert result.source.last_handled_reconcile_at == git_token
    assert result.source.revision == "main@sha1:3333333"
    assert result.revision == "main@sha1:3333333"
    assert [e.kind for e in progress.events if e.phase in ("requested", "ready")] == [
        "GitRepository",
        "GitRepository",
        "Kustomization",
        "Kustomization",
    ]


async def test_with_source_outside_the_allowlist_is_refused_before_patching(
    fake: FakeKubernetes, service: RolloutService
) -> None:
    # The cluster entrypoint's Kustomization takes its source from flux-system's repository.
    fake.add_flux(
        "Kustomization", "conductor-e", source=("GitRepository", "flux-system", "flux-system")
    )

    with pytest.raises(NotAllowed) as caught:
        await service.flux_reconcile("kustomization", "conductor-e", with_source=True)

    assert "gitrepository flux-system/flux-system" in caught.value.message
    assert fake.requests_to("PATCH") == []


async def test_helmrelease_force_and_reset_send_the_same_token(
    fake: FakeKubernetes, service: RolloutService
) -> None:
    fake.add_flux("HelmRelease", "conductor-e", source=GIT_SOURCE, revision="0.1.0")

    result = await service.flux_reconcile("helmrelease", "conductor-e", force=True, reset=True)

    patch = fake.requests_to("PATCH", HR_PATH)[0]
    token = result.token
    assert patch.body == {
        "metadata": {"annotations": {REQUESTED_AT: token, FORCE_AT: token, RESET_AT: token}}
    }
    status = fake.flux_object("HelmRelease", "conductor-e")["status"]
    assert status["lastHandledForceAt"] == token
    assert status["lastHandledResetAt"] == token
    assert result.object.ready is True


async def test_force_on_anything_but_a_helmrelease_is_refused(
    fake: FakeKubernetes, service: RolloutService
) -> None:
    with pytest.raises(InvalidInput):
        await service.flux_reconcile("kustomization", "conductor-e", force=True)
    assert fake.requests == []


async def test_failed_reconciliation_reports_flux_message(
    fake: FakeKubernetes, service: RolloutService
) -> None:
    fake.add_flux(
        "Kustomization",
        "conductor-e",
        reconcile=Reconcile(outcome="failed", message="kustomize build failed: missing resource"),
    )
    progress = Recorder()

    with pytest.raises(ReconcileFailed) as caught:
        await service.flux_reconcile("kustomization", "conductor-e", progress=progress)

    assert caught.value.message == (
        "kustomization/conductor-e reconciliation failed: kustomize build failed: missing resource"
    )
    assert progress.events[-1].phase == "failed"


async def test_request_never_handled_times_out(
    fake: FakeKubernetes, service: RolloutService
) -> None:
    fake.add_flux("GitRepository", "conductor-e", reconcile=Reconcile(outcome="never"))

    with pytest.raises(ReconcileTimedOut) as caught:
        await service.flux_reconcile("gitrepository", "conductor-e", timeout=0.1)

    assert "Flux has not picked up the request" in caught.value.message


async def test_suspended_object_is_not_annotated(
    fake: FakeKubernetes, service: RolloutService
) -> None:
    fake.add_flux("HelmRelease", "conductor-e", suspended=True)

    with pytest.raises(FluxSuspended) as caught:
        await service.flux_reconcile("hr", "conductor-e")

    assert "suspended" in caught.value.message
    assert fake.requests_to("PATCH") == []


async def test_object_outside_the_allowlist_is_refused_before_any_request(
    fake: FakeKubernetes, service: RolloutService
) -> None:
    fake.add_flux("Kustomization", "flux-system")

    with pytest.raises(NotAllowed):
        await service.flux_reconcile("kustomization", "flux-system")
    with pytest.raises(InvalidInput):
        await service.flux_reconcile("bucket", "conductor-e")
    with pytest.raises(InvalidInput):
        await service.flux_status("bucket")

    assert fake.requests == []


async def test_forbidden_patch_names_the_flux_resource(
    fake: FakeKubernetes, service: RolloutService
) -> None:
    fake.add_flux("Kustomization", "conductor-e")
    fake.forbid("patch", "kustomizations", "conductor-e")

    with pytest.raises(KubernetesForbidden) as caught:
        await service.flux_reconcile("kustomization", "conductor-e")

    assert caught.value.message == (
        "forbidden: cannot patch kustomizations.kustomize.toolkit.fluxcd.io "
        "in namespace conductor-e"
    )


async def test_flux_status_lists_the_allowed_objects(
    fake: FakeKubernetes, service: RolloutService
) -> None:
    fake.add_flux("Kustomization", "conductor-e", source=GIT_SOURCE, revision="main@sha1:aaaa")
    fake.add_flux(
        "HelmRelease",
        "conductor-e",
        ready=False,
        message="install retries exhausted",
        revision="0.1.0",
        suspended=True,
    )
    # The GitRepository is allowed but missing from the cluster; a not-allowed one is ignored.
    fake.add_flux("Kustomization", "flux-system")

    statuses = await service.flux_status()

    by_key = {s.key: s for s in statuses}
    assert list(by_key) == [
        "kustomization/conductor-e",
        "helmrelease/conductor-e",
        "gitrepository/conductor-e",
    ]
    ks = by_key["kustomization/conductor-e"]
    assert (ks.ready, ks.suspended, ks.revision) == (True, False, "main@sha1:aaaa")
    assert ks.source is not None and ks.source.name == "conductor-e"
    hr = by_key["helmrelease/conductor-e"]
    assert (hr.ready, hr.suspended, hr.revision, hr.message) == (
        False,
        True,
        "0.1.0",
        "install retries exhausted",
    )
    git = by_key["gitrepository/conductor-e"]
    assert (git.ready, git.reason) == (False, "NotFound")
    assert "not found" in git.message
    assert not any("flux-system" in r.path for r in fake.requests)

    only = await service.flux_status("HelmRelease")
    assert [s.key for s in only] == ["helmrelease/conductor-e"]
