"""The modeldeploy operator (Kopf): reconciles ModelDeployments into Deployments and Services."""
