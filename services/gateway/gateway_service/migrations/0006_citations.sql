-- What a request made with the `retrieval` extension cited: [{source_id, chunk_id, score}], the
-- ids and scores its answer returned, never the chunks' text (that stays in the retrieval service,
-- under its own access rules). NULL for a request without retrieval; [] when the search found
-- nothing. Nullable: the ALTER is instant on a large table.
ALTER TABLE gateway.usage_events ADD COLUMN citations jsonb;
