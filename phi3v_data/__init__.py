"""phi3v data layer: the record format, JSONL I/O, path and tag rules, validation.

Imports nothing heavy (no torch, no video stack) so `phi3v validate` starts instantly.
"""

__version__ = "0.1.0"
