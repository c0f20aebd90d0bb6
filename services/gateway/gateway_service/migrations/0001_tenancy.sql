-- Organizations, their users and API keys. Key secrets are never stored: only a SHA-256 of the key.
-- Everything lives in the `gateway` schema, so a database shared with other services cannot clash.
CREATE TABLE gateway.orgs (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    settings    jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE gateway.users (
    org_id      text NOT NULL REFERENCES gateway.orgs (id),
    id          text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id)
);

CREATE TABLE gateway.api_keys (
    id          text PRIMARY KEY,
    org_id      text NOT NULL REFERENCES gateway.orgs (id),
    user_id     text,
    role        text NOT NULL CHECK (role IN ('admin', 'member')),
    name        text NOT NULL DEFAULT '',
    secret_hash bytea NOT NULL,
    settings    jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    FOREIGN KEY (org_id, user_id) REFERENCES gateway.users (org_id, id)
);

CREATE INDEX api_keys_org ON gateway.api_keys (org_id);
