"""Tooling, never part of a deployment: the local infrastructure (`devstack`), the development keys
(`devkeys`) and `make run` (`launch/`). It may import the kernel (`shared`), the services and the
simulator; neither `shared` nor `services` may import it (tests/unit/test_layering.py)."""
