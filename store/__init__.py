"""The store: the only place SQL and asyncpg live. events/ appends, claims, reads and follows;
projections/ is the projection (its plpgsql and its Python fold side by side), its rebuild and
its queries; migrations/ applies the schema, whose current form is schema.sql."""
