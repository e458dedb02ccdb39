"""Every service, built once per process and wired to the ones it uses.

The composition root (`bot.__main__`) builds one `Services` and hands it to the API, the bot
and the coordination loop, so one merge gate (and its semaphore), one health cache and one
dispatcher serve them all. No service builds another.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.context import AppContext
from bot.integrations.discord_webhook import DiscordWebhook
from bot.services.coordination.loop import CoordinationService
from bot.services.coordination.stuck import StuckDetector
from bot.services.coordination.summary import Completer, Summariser
from bot.services.costs.ledger import CostService
from bot.services.dashboard import DashboardService
from bot.services.dispatch.dispatcher import DispatchService
from bot.services.github.sync import SyncService
from bot.services.github.webhooks import WebhookService
from bot.services.health.checks import HealthService
from bot.services.intake.agent_logs import AgentLogService
from bot.services.intake.events import EventService
from bot.services.intake.execution_logs import ExecutionLogService
from bot.services.merge_gate.gate import MergeGate
from bot.services.work.pull_requests import PullRequestService
from bot.services.work.queries import QueryService
from bot.services.work.repo_config import RepoConfigService
from bot.services.work.routing import RoutingService
from bot.services.work.steering import SteeringService


@dataclass(frozen=True)
class Services:
    context: AppContext
    pull_requests: PullRequestService
    routing: RoutingService
    merge_gate: MergeGate
    costs: CostService
    health: HealthService
    stuck: StuckDetector
    events: EventService
    execution_logs: ExecutionLogService
    agent_logs: AgentLogService
    queries: QueryService
    dashboard: DashboardService
    webhooks: WebhookService
    # The steering API's (`api:<name>` actors); the bot builds its own with its audit poster.
    steering: SteeringService
    # .rig-agent.yaml reads, when GitHub is configured.
    repo_configs: RepoConfigService | None
    # The push dispatcher, while one runs (CONDUCTOR_VALKEY_URL is set; `run` and `api`).
    dispatch: DispatchService | None

    @classmethod
    def build(cls, context: AppContext, *, dispatch: DispatchService | None = None) -> Services:
        prs = PullRequestService(context)
        routing = RoutingService(context)
        gate = MergeGate(context, prs)
        costs = CostService(context)
        stuck = StuckDetector(context, dispatch)
        configs = RepoConfigService(context, context.github) if context.github else None
        return cls(
            context=context,
            pull_requests=prs,
            routing=routing,
            merge_gate=gate,
            costs=costs,
            health=HealthService(context, dispatch),
            stuck=stuck,
            events=EventService(context, gate, prs),
            execution_logs=ExecutionLogService(context),
            agent_logs=AgentLogService(context),
            queries=QueryService(context, routing, gate),
            dashboard=DashboardService(
                context, stuck=stuck, routing=routing, merge_gate=gate, costs=costs
            ),
            webhooks=WebhookService(context, gate, prs, configs),
            steering=SteeringService(context, routing, source="api"),
            repo_configs=configs,
            dispatch=dispatch,
        )

    def coordination(self, messages: Completer | None = None) -> CoordinationService:
        """The coordination loop over these services: the GitHub sync when GitHub is
        configured, the summariser over `messages` (a MessagesClient; None: the template),
        and the webhook in DISCORD_WEBHOOK_URL (unset: summaries are not posted)."""
        context = self.context
        url = context.settings.discord_webhook_url
        poster = DiscordWebhook(context.http, url) if url is not None else None
        syncer = (
            SyncService(context, context.github, configs=self.repo_configs)
            if context.github is not None
            else None
        )
        return CoordinationService(
            context,
            syncer,
            Summariser(context, messages),
            poster,
            health=self.health,
            stuck=self.stuck,
            routing=self.routing,
            merge_gate=self.merge_gate,
            costs=self.costs,
            configs=self.repo_configs,
        )
