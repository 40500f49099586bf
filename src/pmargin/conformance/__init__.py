"""Runners of published conformance vectors (venue-neutral format, Derive PMRM_2)."""
