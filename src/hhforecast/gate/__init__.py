"""The promotion gate: integrity, validation against production, promotion and retraining."""
