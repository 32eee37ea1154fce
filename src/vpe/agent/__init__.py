"""The vpe agent: daemon wiring, configuration, state store, metrics."""
