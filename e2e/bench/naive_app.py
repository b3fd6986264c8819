"""The naive peer: the FastAPI server of the seed notes (shared/reference/model-deployment-notes.md).

One joblib.load at import, then model.predict + model.predict_proba per request in a sync handler.
The model path comes from NAIVE_MODEL. Run: uvicorn naive_app:app --app-dir e2e/bench
"""

import os

import joblib
import numpy as np
from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI()
model = joblib.load(os.environ["NAIVE_MODEL"])


class PredictionRequest(BaseModel):
    features: list[float]


class PredictionResponse(BaseModel):
    prediction: float
    probability: float


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "healthy"}


@app.post("/predict", response_model=PredictionResponse)
def predict(request: PredictionRequest) -> PredictionResponse:
    features = np.array(request.features).reshape(1, -1)
    prediction = model.predict(features)[0]
    probability = model.predict_proba(features)[0].max()
    return PredictionResponse(prediction=prediction, probability=probability)
