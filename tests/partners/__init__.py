"""The partners as the integration tests play them, on the platform's topics and Redis: one
module per way of playing them (the bureau and a hospital's HIS with binding and settlement, the
same family as notify's tests see it, the binding desk alone, notify's town alone)."""
