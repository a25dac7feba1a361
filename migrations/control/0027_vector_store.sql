-- Per-tenant vector stores (docs/vector-store.md).
--
-- A plan may give every tenant of it a vector store by default; a create request's
-- `vector_store` overrides it.
ALTER TABLE berqenas.plans ADD COLUMN vector_store boolean NOT NULL DEFAULT false;

-- The tenant's vector store while it has one: `{"backend": ..., "collection": ...}`,
-- written by the create's `vector_store` step once the collection exists, cleared by
-- the purge once it is deleted. Null: none.
ALTER TABLE berqenas.tenants ADD COLUMN vector_store jsonb
    CHECK (vector_store IS NULL OR (jsonb_typeof(vector_store) = 'object'
                                    AND vector_store ? 'backend' AND vector_store ? 'collection'));
