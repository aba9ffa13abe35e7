"""Builders of tiny synthetic source trees in each dataset's real on-disk layout.

Used by the tests (as fixtures) and by `make demo`; never real data.
"""
