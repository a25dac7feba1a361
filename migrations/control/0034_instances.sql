-- Several berqenas instances on one control database (docs/instances.md). The
-- embedded cluster lives and dies with the one `serve` that runs it: an instance
-- records whether it runs the cluster its control database is in, so another one
-- started with --database-url against that cluster is refused while it lives.
ALTER TABLE berqenas.instances ADD COLUMN embedded boolean NOT NULL DEFAULT false;
