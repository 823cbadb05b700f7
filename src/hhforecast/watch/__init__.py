"""Watching production: drift against the training weeks, and monitoring of logged forecasts."""
