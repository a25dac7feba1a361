-- A warm pool member's login password, given at its refill (docs/warm_pool.md):
-- PostgreSQL checks every password it is given against the empty one, a PBKDF2 of
-- the verifier's 4096 rounds (3 to 8 ms of a claim's server time on the development
-- machine), so the member pays it in the background and a claim only grants LOGIN.
-- Sealed with the server's key, as the registry's `credentials`; a claim moves the
-- same bytes into its tenant's row. NULL for members made before this column: their
-- claim sets a new password, as before.
ALTER TABLE berqenas.warm_pool ADD COLUMN credentials bytea;
