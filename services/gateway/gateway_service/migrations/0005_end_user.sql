-- The application's end user a request named (OpenAI `user`, Anthropic `metadata.user_id`), so
-- usage and the request log can be read per end user. Nullable: the ALTER is instant on a large table.
ALTER TABLE gateway.usage_events ADD COLUMN end_user text;

-- Usage and request-log reads filtered by end user, within an organization and a time range.
CREATE INDEX usage_events_org_end_user ON gateway.usage_events (org_id, end_user, created_at)
    WHERE end_user IS NOT NULL;
