"""`make run`: the broker, Redis and every service as processes, the simulator playing a small
province, and a live view of what the services' /metrics say, until Ctrl-C, SIGTERM or
`DURATION`; then everything it started is stopped and a summary printed (exit 0).

`processes` starts and stops the children, `metrics` reads their Prometheus text, `view` draws
the live view, the plain status line and the summary, `app` ties them together.
"""
