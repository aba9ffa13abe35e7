"""The `phi3v` command line: the top layer over `phi3v_data`, `converters` and `phi3v_train`.

One module per command (`convert`, `validate`, ...) parses flags, builds the library's
settings, calls one library function, prints and sets the exit code. `app` wires them.
"""
