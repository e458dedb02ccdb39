"""/flux status and /flux reconcile on the wire: real discord.py against the fake Discord, real
kubernetes-asyncio against FakeKubernetes, real PostgreSQL for the audit trail."""

from __future__ import annotations

from bot.ui.confirm import CANCEL_ID, CONFIRM_ID
from tests.discord import test_admin_support as support
from tests.discord.conftest import ADMIN_USER, USER
from tests.discord.helpers import assert_error, denials
from tests.discord.test_admin_support import Admin, assert_trail, description, title
from tests.fakes.discord import buttons
from tests.fakes.kubernetes import REQUESTED_AT, Reconcile

admin = support.admin
kube = support.kube

REQUESTED, CONFIRMED, DENIED, CANCELLED, COMPLETED, FAILED = (
    "ADMIN_ACTION_REQUESTED",
    "ADMIN_ACTION_CONFIRMED",
    "ADMIN_ACTION_DENIED",
    "ADMIN_ACTION_CANCELLED",
    "ADMIN_ACTION_COMPLETED",
    "ADMIN_ACTION_FAILED",
)
NEW = "main@sha1:2222222"


def gitops(admin: Admin, *, kustomization: Reconcile = Reconcile(revision=NEW)) -> None:
    admin.kube.add_flux("GitRepository", "conductor-e", reconcile=Reconcile(revision=NEW))
    admin.kube.add_flux(
        "Kustomization",
        "conductor-e",
        source=("GitRepository", "conductor-e", None),
        reconcile=kustomization,
    )


# --- /flux reconcile -----------------------------------------------------------------------------


async def test_reconcile_with_source_confirmed(admin: Admin) -> None:
    gitops(admin)
    interaction, question = await admin.ask(
        "flux reconcile", {"kind": "kustomization", "name": "conductor-e", "with-source": True}
    )
    assert title(question) == "Reconcile kustomization/conductor-e?"
    assert "after its GitRepository source" in description(question)
    assert buttons(question)[CONFIRM_ID]["label"] == "Reconcile"
    assert admin.kube.requests == []

    await admin.press(question, CONFIRM_ID)
    final = await admin.outcome(interaction)
    assert title(final) == "✅ Reconciled kustomization/conductor-e"
    fields = {f["name"]: f["value"] for f in final["embeds"][0]["fields"]}
    assert fields["Revision"] == NEW
    assert fields["Source gitrepository/conductor-e"] == NEW
    # The source first, then the object, each with flux's annotation.
    assert [(kind, name) for kind, name, _ in admin.kube.reconcile_requests] == [
        ("GitRepository", "conductor-e"),
        ("Kustomization", "conductor-e"),
    ]
    assert all(REQUESTED_AT in a for _, _, a in admin.kube.reconcile_requests)
    text = description(final)
    assert (
        "gitrepository/conductor-e: reconciliation of gitrepository/conductor-e requested" in text
    )

    events = await admin.trail(3)
    assert_trail(
        events,
        [REQUESTED, CONFIRMED, COMPLETED],
        action="/flux reconcile --with-source",
        target="kustomization/conductor-e",
    )
    assert events[-1].data["result"].startswith(f"ready at {NEW}")
    assert "kustomization/conductor-e" in await admin.audit_post("completed")


async def test_reconcile_cancelled(admin: Admin) -> None:
    gitops(admin)
    _, question = await admin.ask("flux reconcile", {"kind": "ks", "name": "conductor-e"})
    await admin.press(question, CANCEL_ID)
    assert "Cancelled" in description(admin.fake.messages[question["id"]])
    events = await admin.trail(2)
    assert_trail(events, [REQUESTED, CANCELLED], action="/flux reconcile", target="ks/conductor-e")
    assert admin.kube.requests == []


async def test_reconcile_confirmation_times_out(admin: Admin) -> None:
    admin.cog.confirm_timeout = 0.3
    gitops(admin)
    _, question = await admin.ask(
        "flux reconcile", {"kind": "kustomization", "name": "conductor-e"}
    )
    await admin.fake.wait_for(
        lambda: "Not confirmed within" in description(admin.fake.messages[question["id"]]), 5
    )
    assert all(b["disabled"] for b in buttons(admin.fake.messages[question["id"]]).values())
    events = await admin.trail(2)
    assert [e.type for e in events] == [REQUESTED, CANCELLED]
    assert "timed out" in events[-1].data["result"]
    assert admin.kube.requests == []


async def test_reconcile_that_flux_never_handles_times_out_with_the_reason(admin: Admin) -> None:
    admin.cog.rollout_timeout = 0.3
    gitops(admin, kustomization=Reconcile(outcome="never"))
    interaction, question = await admin.ask(
        "flux reconcile", {"kind": "kustomization", "name": "conductor-e"}
    )
    await admin.press(question, CONFIRM_ID)
    final = await admin.outcome(interaction)
    assert title(final) == "❌ Reconciliation of kustomization/conductor-e timed out"
    assert "Flux has not picked up the request" in description(final)
    events = await admin.trail(3)
    assert [e.type for e in events] == [REQUESTED, CONFIRMED, FAILED]
    assert "timed out" in events[-1].data["result"]


async def test_reconcile_that_fails_shows_flux_message(admin: Admin) -> None:
    gitops(admin, kustomization=Reconcile(outcome="failed", message="kustomize build failed: x"))
    interaction, question = await admin.ask(
        "flux reconcile", {"kind": "kustomization", "name": "conductor-e"}
    )
    await admin.press(question, CONFIRM_ID)
    final = await admin.outcome(interaction)
    assert title(final) == "❌ Reconciliation of kustomization/conductor-e failed"
    assert "kustomize build failed: x" in description(final)


async def test_reconcile_forbidden_by_rbac(admin: Admin) -> None:
    gitops(admin)
    admin.kube.forbid("patch", "kustomizations")
    interaction, question = await admin.ask(
        "flux reconcile", {"kind": "kustomization", "name": "conductor-e"}
    )
    await admin.press(question, CONFIRM_ID)
    final = await admin.outcome(interaction)
    reason = (
        "forbidden: cannot patch kustomizations.kustomize.toolkit.fluxcd.io in namespace "
        "conductor-e"
    )
    assert reason in description(final)
    events = await admin.trail(3)
    assert events[-1].type == FAILED and events[-1].data["result"] == reason


async def test_reconcile_of_an_object_that_does_not_exist(admin: Admin) -> None:
    interaction, question = await admin.ask(
        "flux reconcile", {"kind": "helmrelease", "name": "conductor-e"}
    )
    await admin.press(question, CONFIRM_ID)
    final = await admin.outcome(interaction)
    assert "HelmRelease conductor-e not found in namespace conductor-e" in description(final)
    assert admin.kube.reconcile_requests == []


async def test_reconcile_refused_outside_the_allowlist(admin: Admin) -> None:
    admin.kube.add_flux("Kustomization", "flux-system")
    reply = await admin.harness.reply(
        "flux reconcile", {"kind": "kustomization", "name": "flux-system"}, user_id=ADMIN_USER
    )
    assert_error(reply, "kustomization/flux-system is not an allowed Flux object")
    reply = await admin.harness.reply(
        "flux reconcile", {"kind": "deployment", "name": "conductor-e"}, user_id=ADMIN_USER
    )
    assert_error(reply, "unknown Flux kind 'deployment'")
    assert admin.kube.requests == []
    events = await admin.trail(4)
    assert [e.type for e in events] == [REQUESTED, DENIED, REQUESTED, DENIED]


async def test_reconcile_denied_to_a_non_admin(admin: Admin) -> None:
    gitops(admin)
    reply = await admin.harness.reply(
        "flux reconcile", {"kind": "kustomization", "name": "conductor-e"}, user_id=USER
    )
    assert_error(reply, "You may not run /flux reconcile")
    assert admin.kube.requests == []
    assert len(await denials(admin.harness)) == 1


async def test_reconcile_autocomplete_reads_the_configuration(admin: Admin) -> None:
    kinds = await admin.fake.autocomplete(
        "flux reconcile", {"kind": ""}, "kind", user_id=ADMIN_USER
    )
    assert [c["value"] for c in kinds] == ["kustomization", "helmrelease", "gitrepository"]
    names = await admin.fake.autocomplete(
        "flux reconcile", {"kind": "helmrelease", "name": ""}, "name", user_id=ADMIN_USER
    )
    assert [c["value"] for c in names] == ["conductor-e"]
    assert admin.kube.requests == []


# --- /flux status --------------------------------------------------------------------------------


async def test_flux_status_lists_the_allowed_objects(admin: Admin) -> None:
    gitops(admin)
    admin.kube.add_flux(
        "HelmRelease", "conductor-e", ready=False, message="install retries exhausted"
    )
    admin.kube.add_flux("Kustomization", "not-allowed")
    reply = await admin.harness.reply("flux status", user_id=ADMIN_USER)
    text = description(reply)
    assert "**kustomization/conductor-e** · ready" in text
    assert "**helmrelease/conductor-e** · not ready" in text
    assert "install retries exhausted" in text
    assert "not-allowed" not in text
    assert len(admin.kube.requests) == 3
    events = await admin.trail(2)
    assert_trail(events, [REQUESTED, COMPLETED], action="/flux status", target="all")
    assert events[-1].data["result"] == "3 objects, 1 not ready"


async def test_flux_status_of_one_kind_and_a_forbidden_object(admin: Admin) -> None:
    gitops(admin)
    admin.kube.forbid("get", "gitrepositories")
    reply = await admin.harness.reply("flux status", {"kind": "gitrepository"}, user_id=ADMIN_USER)
    text = description(reply)
    assert "gitrepository/conductor-e" in text
    assert "forbidden: cannot get gitrepositories.source.toolkit.fluxcd.io" in text
    assert "kustomization" not in text


async def test_flux_status_refuses_an_unknown_kind_and_a_non_admin(admin: Admin) -> None:
    reply = await admin.harness.reply("flux status", {"kind": "pods"}, user_id=ADMIN_USER)
    assert_error(reply, "unknown Flux kind 'pods'")
    reply = await admin.harness.reply("flux status", user_id=USER)
    assert_error(reply, "You may not run /flux status")
    assert admin.kube.requests == []
