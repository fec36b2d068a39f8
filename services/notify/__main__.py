"""`python -m services.notify`: run the notify service until SIGINT or SIGTERM."""

import asyncio

from services.notify.app import create_app

if __name__ == "__main__":
    asyncio.run(create_app().run())
