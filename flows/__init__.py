"""Entry points: the `pneumo` CLI and the Prefect flows that wire `pipeline` steps together."""
