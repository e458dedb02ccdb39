"""The projections: the tables each append keeps, and everything that writes or reads them.

sql/ holds conductor_project, the rules each append applies (plpgsql); fold.py holds the same
rules in Python for the one-pass rebuild (rebuild.py), pgtext.py what of PostgreSQL's text they
imitate; reads.py answers the queries. Import the public names from here.
"""

from store.projections.reads import (
    ISSUE_STATES,
    Agent,
    ExecutionLog,
    Issue,
    IssueCostRow,
    IssueUsageDay,
    PendingPrEvent,
    Projections,
    Rate,
    RepoConfig,
    UsageDay,
    UsageRow,
)
from store.projections.rebuild import PROJECTION_TABLES, projection_snapshot, rebuild_projections

__all__ = [
    "ISSUE_STATES",
    "PROJECTION_TABLES",
    "Agent",
    "ExecutionLog",
    "Issue",
    "IssueCostRow",
    "IssueUsageDay",
    "PendingPrEvent",
    "Projections",
    "Rate",
    "RepoConfig",
    "UsageDay",
    "UsageRow",
    "projection_snapshot",
    "rebuild_projections",
]
