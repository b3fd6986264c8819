"""Shared API of modeldeploy: the ModelDeployment schema and the names both processes agree on.

Imports neither the operator nor the server.
"""
