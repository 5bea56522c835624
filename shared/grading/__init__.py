"""The grading harness: a pytest plugin, the score model, gradebook, self-check and release."""
