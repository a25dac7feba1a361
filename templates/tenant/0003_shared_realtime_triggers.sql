-- The realtime_events triggers fire one shared copy of their functions per database
-- (berqenas_realtime.event_gate, event_immutable, event_wake: the control role
-- installs them in every database that holds tenants, before any template runs), and
-- the tenant's own copies from 0002 go. Same triggers, same names, same behaviour;
-- what changes is that a create no longer adds three functions whose names every
-- tenant shares, which made each later create slower (docs/scale.md). The tenant can
-- no longer change the functions its events pass through either.

CREATE OR REPLACE TRIGGER realtime_gate BEFORE INSERT ON realtime_events
    FOR EACH ROW EXECUTE FUNCTION berqenas_realtime.event_gate();
CREATE OR REPLACE TRIGGER realtime_immutable BEFORE UPDATE ON realtime_events
    FOR EACH ROW EXECUTE FUNCTION berqenas_realtime.event_immutable();
CREATE OR REPLACE TRIGGER realtime_wake AFTER INSERT ON realtime_events
    FOR EACH STATEMENT EXECUTE FUNCTION berqenas_realtime.event_wake();

DROP FUNCTION realtime_gate();
DROP FUNCTION realtime_immutable();
DROP FUNCTION realtime_wake();
