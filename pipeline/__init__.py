"""pneumo-ops library: plain functions on values and config objects (no Prefect here)."""
