"""The marts the loader reads, as Python values: one row type per model (the deliveries, the
expected years, the build log). No I/O here: an engine (loader.engines) reads the rows, the
run (loader.run) acts on them."""
