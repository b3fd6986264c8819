"""The generic modeldeploy inference server (FastAPI)."""
