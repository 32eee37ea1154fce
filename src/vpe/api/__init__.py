"""REST API (FastAPI) of the agent: versioned under /v1, OpenAPI at /openapi.json."""
