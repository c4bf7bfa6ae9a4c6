"""rpc-cli's exit statuses (a module of its own, importing nothing, so that the entry
point can answer a Ctrl-C with one before anything else is imported)."""

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_RUNNING, EXIT_NODE = 0, 1, 2, 3, 4
#: Ctrl-C: 128 + SIGINT, as a shell reports it
EXIT_INTERRUPTED = 130
#: stdout's reader went away (``rpc-cli ... | head``): 128 + SIGPIPE, as a shell reports it
EXIT_BROKEN_PIPE = 141
