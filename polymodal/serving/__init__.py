"""HTTP serving of a saved model (FastAPI + uvicorn), without the training code."""
