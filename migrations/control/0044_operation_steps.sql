-- The steps the build that began an operation listed for its kind, in order, and the
-- index of its point of no return (docs/operations.md, "Upgrades"). A build whose
-- kind lists other steps (a step added, removed or moved since) takes such an
-- operation up by this list, each step by name, instead of reading its journal by
-- position. NULL: begun before this column, or a one-transaction kind.
ALTER TABLE berqenas.operations
    ADD COLUMN steps text[],
    ADD COLUMN point_of_no_return integer;
