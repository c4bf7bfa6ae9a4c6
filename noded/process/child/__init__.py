"""The code that runs in other processes: the fork server (:mod:`.fork_server`), a function
process (:mod:`.runner`), and the stdio contract between them and the daemon
(:mod:`.frames`).  It imports nothing of the daemon's side (asyncio, aiohttp): every
function process pays for what it imports."""
