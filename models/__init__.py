"""The Keras model zoo: configs, builders, custom layers, step (streaming) variants and training."""
