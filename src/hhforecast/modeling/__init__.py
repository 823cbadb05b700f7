"""The forecasting model: network, artifacts, inference, evaluation, training and backtest."""
