"""Latency estimated from the file, before the device is owned: calibration runs, per-op predictors, estimates."""
