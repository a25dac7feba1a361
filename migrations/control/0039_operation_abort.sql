-- An abort asked for by an operator (POST /api/v1/operations/{id}/abort): the
-- instance running the operation reads it back when it renews its lease, and undoes
-- the operation at its next step boundary before the point of no return.
ALTER TABLE berqenas.operations ADD COLUMN abort_requested_at timestamptz;
