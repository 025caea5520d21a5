"""The studio farm: the worker's ZeroMQ front with its jobs placed on a Ray cluster."""
