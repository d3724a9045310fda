"""One module per CLI verb. Each stays thin: parse options, call the library, print. No TensorFlow at import time."""
