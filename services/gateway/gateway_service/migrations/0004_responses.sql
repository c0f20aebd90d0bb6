-- Responses API answers kept with `store: true` (the default), for GET /v1/responses/{id} and for
-- `previous_response_id`: the response object as answered and the conversation that led to it with
-- its output (chat messages), so a follow-up continues it. Read and deleted only within the
-- caller's organization; deleted after GATEWAY_RESPONSE_RETENTION_DAYS.
CREATE TABLE gateway.responses (
    id            text PRIMARY KEY,
    org_id        text NOT NULL,
    key_id        text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    response      jsonb NOT NULL,
    conversation  jsonb NOT NULL
);

-- Retention deletes by age across every organization.
CREATE INDEX responses_created ON gateway.responses (created_at);
