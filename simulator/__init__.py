"""A small Shaanxi province at play, for `make run`, demos and `make bench`'s paced loads.

`province` draws who and what exists (institutions, people, families and their bindings) and
`traffic` what happens next (HIS charges, refunds, fraud attempts, bureau events): both pure and
deterministic for a seed. `pacing` publishes at a steady rate; `run` does the I/O (Kafka and the
gateway's HTTP API); `python -m simulator` is the command.
"""
