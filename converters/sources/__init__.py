"""One module per source. Each registers its `phi3v convert <name>` command on import."""
