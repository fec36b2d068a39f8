"""`python -m services.binding`: run the binding service until SIGINT or SIGTERM."""

import asyncio

from services.binding.app import create_app

if __name__ == "__main__":
    asyncio.run(create_app().run())
