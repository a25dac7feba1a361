-- Every multi-step operation runs on the operation engine (0015): the restore journal
-- (operations.undo), the scratch-object registry and its sweeper are gone, and the
-- engine settles only operations an engine instance ran.
--
-- Operations a release before the engine left running (no instance) cannot be settled
-- by this one: they are closed as failed, saying so. Upgrade from a server that was
-- stopped cleanly and they do not exist.
UPDATE berqenas.operations
   SET state = 'failed', finished_at = now(),
       error = 'left running by a release before the operation engine; not settled'
 WHERE state = 'running' AND instance_id IS NULL;

-- Scratch objects are declared in their operation's journal now. A registry that
-- still lists objects (a process of an older release died with them) is kept for an
-- operator to look at; an empty one goes.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM berqenas.scratch_objects) THEN
        DROP TABLE berqenas.scratch_objects;
    END IF;
END
$$;
