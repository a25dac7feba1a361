-- When the quota round last took a usage sample (docs/console.md). A sample writes a
-- tenant's row only when one of its figures moved since its last row, or that row is
-- older than --usage-sample-hold, so the newest row no longer says when the last
-- sampling ran.
CREATE TABLE berqenas.usage_sample_runs (
    single     boolean PRIMARY KEY DEFAULT true CHECK (single),
    sampled_at timestamptz NOT NULL
);
INSERT INTO berqenas.usage_sample_runs (sampled_at)
SELECT max(sampled_at) FROM berqenas.usage_samples HAVING count(*) > 0;
