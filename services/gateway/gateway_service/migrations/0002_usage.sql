-- One row per completed (or cancelled) generation, written in batches off the request path.
CREATE TABLE gateway.usage_events (
    id                 bigserial PRIMARY KEY,
    created_at         timestamptz NOT NULL DEFAULT now(),
    org_id             text NOT NULL,
    key_id             text NOT NULL,
    user_id            text,
    model              text NOT NULL,
    prompt_tokens      integer NOT NULL,
    completion_tokens  integer NOT NULL,
    cost_usd           double precision NOT NULL,
    request_id         text NOT NULL,
    cancelled          boolean NOT NULL DEFAULT false
);

CREATE INDEX usage_events_org_time ON gateway.usage_events (org_id, created_at);
CREATE INDEX usage_events_key_time ON gateway.usage_events (key_id, created_at);
