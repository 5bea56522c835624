"""Moved to `shared/testing/pricing.py` (lab 5 uses it too); import it from there."""

from shared.testing.pricing import PricingControl, Stats

__all__ = ["PricingControl", "Stats"]
