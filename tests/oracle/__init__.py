"""Test oracles: plain Python restatements of rules that live elsewhere (the settlement Functions),
for tests to check those against."""
