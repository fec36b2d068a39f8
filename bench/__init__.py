"""`make bench`: the platform's throughput, latency and memory beside the machine's raw limits,
measured in one run and printed as one table (see bench/__main__.py)."""
