"""Everything that talks to PostgreSQL: migrations, named queries, the embedded server."""
