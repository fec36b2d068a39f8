"""Moved: `make bench` runs the `bench` package at the repository root (`python -m bench`)."""

import asyncio

from bench.__main__ import main

if __name__ == "__main__":
    asyncio.run(main())
