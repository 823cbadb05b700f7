"""The baseline: a bare FastAPI endpoint taking the same five-feature body as /api/predict.

It validates the body with a pydantic model and returns a constant, so it measures what
FastAPI and uvicorn cost per request before any model work.
"""

from fastapi import FastAPI
from pydantic import BaseModel


class Week(BaseModel):
    acft: float
    sum_daily_hours: float
    Cycles: float
    sum_uti_mensal: float
    age_fleet: float


app = FastAPI()


@app.post("/api/predict")
async def predict(week: Week) -> dict[str, float]:
    return {"HH": 0.0}
