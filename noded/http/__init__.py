"""The HTTP layer: the aiohttp application, its procedures, and the one middleware that
turns errors into the contract's answers.  It talks to :mod:`noded.calls` only."""
