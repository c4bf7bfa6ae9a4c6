"""rpc-cli's exit statuses (a module of its own, importing nothing, so that the entry
point can answer a Ctrl-C with one before anything else is imported)."""

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_RUNNING, EXIT_NODE = 0, 1, 2, 3, 4
#: Ctrl-C: 128 + SIGINT, as a shell reports it
EXIT_INTERRUPTED = 130
#: stdout's reader went away (``rpc-cli ... | head``): 128 + SIGPIPE, as a shell reports it
EXIT_BROKEN_PIPE = 141

# --- what each status means, command by command (each command's --help shows its own) ---

_USAGE = "usage error"
_NODE = "the node unreachable, not answering, busy or shutting down"
_MASTER = "ganeti-masterd unreachable, not answering, busy or shutting down"
_OTHER = "another error (said on stderr)"
#: a node's or the master's 4xx answer (RemoteError) ends a command with EXIT_USAGE too
_NODE_REFUSED = "usage error, or the node refused it (an unknown or lost call, bad args)"
_MASTER_REFUSED = "usage error, or ganeti-masterd refused it (an unknown job, bad args)"
#: what a node's call ends with (start, wait, call)
_CALL = {
    EXIT_OK: "the call finished and succeeded (its state printed)",
    EXIT_FAILED: "the function failed (its error on stderr)",
    EXIT_USAGE: _NODE_REFUSED,
    EXIT_RUNNING: "not finished yet (its fnc_id printed)",
    EXIT_NODE: _NODE,
}
_ASK_NODE = {EXIT_OK: "answered (printed)", EXIT_FAILED: _OTHER, EXIT_USAGE: _NODE_REFUSED,
             EXIT_NODE: _NODE}  # fmt: skip
_ASK_MASTER = {EXIT_OK: "answered (printed)", EXIT_FAILED: _OTHER, EXIT_USAGE: _MASTER_REFUSED,
               EXIT_NODE: _MASTER}  # fmt: skip
_JOB_ENDED = {
    EXIT_OK: "the job ended and every node succeeded",
    EXIT_FAILED: "a node failed, timed out or was skipped",
    EXIT_NODE: "a node was unreachable, or ganeti-masterd is",
}

#: the statuses each command may end with besides 130 and 141, by its words after rpc-cli
EXITS: dict[str, dict[int, str]] = {
    "start": _CALL,
    "wait": _CALL,
    "call": {**_CALL, EXIT_RUNNING: "not finished by --timeout (its fnc_id printed)"},
    "abort": {
        **_ASK_NODE,
        EXIT_OK: "the call has ended (aborted now, or finished before)",
        EXIT_RUNNING: "the call is still running",
    },
    "output": _ASK_NODE,
    "list": _ASK_NODE,
    "identify": _ASK_NODE,
    "functions": _ASK_NODE,
    "reload": {
        **_ASK_NODE,
        EXIT_OK: "the node runs the new code",
        EXIT_FAILED: "the reload failed: the old code serves on",
    },
    "certs init": {
        EXIT_OK: "the CA written (its paths printed)",
        EXIT_USAGE: "usage error, or DIR holds a CA already",
    },
    "certs issue": {
        EXIT_OK: "written (the paths printed)",
        EXIT_USAGE: "usage error, a bad NAME, or NAME.crt exists (--force)",
    },
    "audit verify": {
        EXIT_OK: "the chain holds",
        EXIT_FAILED: "the chain is broken (where, on stderr)",
        EXIT_USAGE: "usage error, or a FILE missing",
    },
    "gather": {
        EXIT_OK: "every node succeeded",
        EXIT_FAILED: "a node failed (or was skipped)",
        EXIT_USAGE: _USAGE,
        EXIT_NODE: "a node timed out or was unreachable",
    },
    "nodes": _ASK_MASTER,
    "events": {
        **_ASK_MASTER,
        EXIT_OK: "printed; with --follow, Ctrl-C ends it with 0",
        EXIT_INTERRUPTED: "Ctrl-C without --follow",
    },
    "job submit": {
        **_ASK_MASTER,
        **_JOB_ENDED,
        EXIT_OK: "submitted (the job printed); "
        "with --follow, the job ended and every node succeeded",
        EXIT_INTERRUPTED: "Ctrl-C with --follow: the job goes on in the master",
    },
    "job list": _ASK_MASTER,
    "job show": {**_ASK_MASTER, **_JOB_ENDED, EXIT_RUNNING: "the job is still running"},
    "job follow": {
        **_ASK_MASTER,
        **_JOB_ENDED,
        EXIT_INTERRUPTED: "Ctrl-C: the job goes on in the master",
    },
    "job abort": {
        **_ASK_MASTER,
        EXIT_OK: "the job is aborted (the job printed)",
        EXIT_FAILED: "the job had ended before: nothing was aborted (or another error)",
        EXIT_RUNNING: "the abort is recorded (no further node starts); calls still run",
    },
    "completion": {EXIT_OK: "the script printed", EXIT_USAGE: _USAGE},
}
_ALWAYS = {
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
    EXIT_BROKEN_PIPE: "stdout's reader went away (| head)",
}


def exit_statuses(command: str) -> str:
    """The exit statuses of ``command`` (``"call"``, ``"job show"``), for its --help."""
    meanings = {**EXITS[command], **{k: v for k, v in _ALWAYS.items() if k not in EXITS[command]}}
    lines = [f"  {status:>3}  {meaning}" for status, meaning in sorted(meanings.items())]
    return "exit status:\n" + "\n".join(lines)
