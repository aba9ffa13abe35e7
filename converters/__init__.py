"""Dataset converters: one module per source in `converters/sources/`, one framework.

Imports nothing heavy: video and Hugging Face readers are imported by the converters
that need them, inside their functions.
"""
