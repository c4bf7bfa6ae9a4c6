"""Child processes: spawn, feed, read, signal, reap.  The only package that does so.

The daemon's side of a function process (import each from its module):

- :mod:`noded.process.function`: one call's process (:class:`FunctionProcess`);
- :mod:`noded.process.process_set`: the live ones, that abort and shutdown reach;
- :mod:`noded.process.pipe_readers`: what a process writes, read with bounds (progress and its
  result frame, its output, its stderr's tail);
- :mod:`noded.process.watcher`: one epoll for every process's descriptors;
- :mod:`noded.process.spawners`: the :class:`Spawner` interface and
  :class:`ExecSpawner`, an interpreter per call;
- :mod:`noded.process.fork_spawner` and :mod:`noded.process.fork_server_process`: the fork
  server (:class:`ForkSpawner`) and its process;
- :mod:`noded.process.importer`: a reload's import of the function modules, in a child
  process and bounded in time;
- :mod:`noded.process.leftovers`: a crashed daemon's leftover groups, and resource checks.

The code that runs *inside* the fork server and the function processes is
:mod:`noded.process.child`; it imports nothing of the daemon's side.  This file imports
nothing either, so that importing the child code stays as light as it is.
"""
