"""The generic modeldeploy inference server (FastAPI): one image serves every model."""

__version__ = "0.1.0"
