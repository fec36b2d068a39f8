"""`python -m services.settlement`: run the settlement service until SIGINT or SIGTERM."""

import asyncio

from services.settlement.app import create_app

if __name__ == "__main__":
    asyncio.run(create_app().run())
