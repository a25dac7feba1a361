-- Keys can expire (rotation keeps the old key working for an overlap period) and
-- carry a label so operators can tell them apart.
ALTER TABLE berqenas.api_keys
    ADD COLUMN expires_at timestamptz,
    ADD COLUMN name text,
    ADD COLUMN replaced_by uuid REFERENCES berqenas.api_keys (id) ON DELETE SET NULL;
