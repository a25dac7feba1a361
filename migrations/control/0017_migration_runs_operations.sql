-- A template migration run is an operation (`migrate.run`, with the run's id) of the
-- operation engine: the engine's lease and reconciler tell a live run from a dead one
-- and finish it. The run's own lease goes. `interrupted` stays allowed: rows of older
-- releases keep it.

-- A run an older release left `running` has no operation to finish it: it is
-- interrupted, as that release would have said once its lease lapsed, so that it
-- does not hold the one-run slot for ever.
UPDATE berqenas.migration_runs
   SET state = 'interrupted', finished_at = coalesce(finished_at, now()),
       error = coalesce(error, 'the process running it stopped; run again to continue')
 WHERE state = 'running'
   AND NOT EXISTS (SELECT 1 FROM berqenas.operations o WHERE o.id = migration_runs.id);

ALTER TABLE berqenas.migration_runs DROP COLUMN lease_until;
