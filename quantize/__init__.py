"""Recipes, conversion, calibration, validation and .tflite inspection."""
