"""The numbered SQL migrations (`NNN_name.sql`), shipped as package data; `core.migrate` applies them."""
