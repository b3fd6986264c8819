"""Shared API of modeldeploy: the ModelDeployment schema and names both processes agree on. Imports neither the operator nor the server."""
