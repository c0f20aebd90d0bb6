-- The usage row becomes the request log: one row per chat request that passed admission, with its
-- outcome, timings, guardrail verdicts and (per the organization's log policy) a redacted summary
-- or the full conversation. Existing rows keep their usage columns; the new ones are nullable or
-- defaulted so the ALTER is instant on a large table.
ALTER TABLE gateway.usage_events
    ADD COLUMN route           text NOT NULL DEFAULT '/v1/chat/completions',
    ADD COLUMN stream          boolean NOT NULL DEFAULT false,
    ADD COLUMN status          integer NOT NULL DEFAULT 200,
    ADD COLUMN finish_reason   text,
    ADD COLUMN error_code      text,
    ADD COLUMN latency_ms      double precision,
    ADD COLUMN ttft_ms         double precision,
    ADD COLUMN input_verdict   text,
    ADD COLUMN input_codes     text[] NOT NULL DEFAULT '{}',
    ADD COLUMN output_verdict  text,
    ADD COLUMN output_codes    text[] NOT NULL DEFAULT '{}',
    ADD COLUMN log_policy      text NOT NULL DEFAULT 'metadata',
    ADD COLUMN summary         text,
    ADD COLUMN conversation    jsonb;

-- Read by id (GET /v1/requests/{id}), always within the caller's organization.
CREATE INDEX usage_events_org_request ON gateway.usage_events (org_id, request_id);
-- Retention deletes by age across every organization.
CREATE INDEX usage_events_created ON gateway.usage_events (created_at);
