"""The course's own infrastructure: settings, service checks, test fixtures and grading.

Nothing in here is a lesson. Labs and the capstone import it so that every lab does not
re-invent configuration, readiness checks or the grading harness.
"""
