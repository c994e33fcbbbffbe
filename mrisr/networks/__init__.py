"""The super-resolution networks and their training losses."""
