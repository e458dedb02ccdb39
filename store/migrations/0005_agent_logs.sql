-- The agent runtime's activity log (its src/agent-log.js posts a batch every 2 s): kept as a
-- bounded history per agent, not as events - it is chatter about the work, not a fact of it,
-- and would outgrow the event store within days. Not a projection: a rebuild leaves it alone.
CREATE TABLE agent_logs (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    agent_id    text        NOT NULL,
    ts          timestamptz,
    level       text,
    message     text        NOT NULL,
    meta        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX agent_logs_agent ON agent_logs (agent_id, id DESC);
