"""``Cluster``: the nodes of a cluster, one pooled client per node, calls by node name."""

from __future__ import annotations

import ssl
from collections.abc import AsyncGenerator, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, TypedDict, Unpack

from masterd.call import CallFunctionKeywords, call_function
from masterd.fanout import (
    CallManyKeywords,
    GatherSummary,
    NodeResult,
    ResumeKeywords,
    call_many,
    gather,
    resume,
)
from masterd.node import Node, load_nodes
from rpc_client.client import DEFAULT_TIMEOUTS, ClientTimeouts, NodeClient
from rpc_client.errors import UnknownNode
from rpc_client.tls import TLSConfig
from rpc_client.transport import MAX_CONNECTIONS_PER_NODE, MAX_HANDSHAKES, Pool


class ClusterKeywords(TypedDict, total=False):
    """The keywords of :class:`Cluster` past its nodes, for what passes them on."""

    timeouts: ClientTimeouts
    max_handshakes: int
    max_connections_per_node: int


class Cluster:
    """Nodes by name and uuid; connections pooled per node until :meth:`close`."""

    def __init__(
        self,
        nodes: Iterable[Node],
        *,
        timeouts: ClientTimeouts = DEFAULT_TIMEOUTS,
        max_handshakes: int = MAX_HANDSHAKES,
        max_connections_per_node: int = MAX_CONNECTIONS_PER_NODE,
    ):
        """``max_handshakes``: TLS handshakes in progress at once; a node's connect
        timeout counts from its turn (see :data:`rpc_client.transport.MAX_HANDSHAKES`).
        ``max_connections_per_node``: connections open to one node at once; a request
        beyond waits its turn within its own timeout
        (:data:`rpc_client.transport.MAX_CONNECTIONS_PER_NODE`)."""
        self.nodes: list[Node] = list(nodes)
        self._timeouts = timeouts
        self._by_key: dict[str, Node] = {}
        for node in self.nodes:
            for key in (node.name, node.uuid):
                if key is not None and self._by_key.setdefault(key, node) is not node:
                    raise ValueError(f"two nodes are known as {key!r}")
        self._clients: dict[str, NodeClient] = {}
        #: one connection pool for every node, and one TLS context per TLS setting
        self._pool = Pool(max_handshakes=max_handshakes,
                          max_connections_per_node=max_connections_per_node)  # fmt: skip
        self._contexts: dict[TLSConfig, ssl.SSLContext] = {}

    @classmethod
    def from_file(cls, path: Path | str, **kwargs: Unpack[ClusterKeywords]) -> Cluster:
        """A cluster of the nodes in a ``nodes.toml`` (see :func:`masterd.node.load_nodes`)."""
        return cls(load_nodes(path), **kwargs)

    def node(self, name_or_uuid: str) -> Node:
        """The node of that name or uuid; :class:`UnknownNode` if there is none."""
        node = self._by_key.get(name_or_uuid)
        if node is None:
            raise UnknownNode(f"no node named {name_or_uuid!r} (nor with that uuid) here")
        return node

    def select(self, *labels: str) -> list[Node]:
        """The nodes that carry every one of ``labels`` (all of them if none is given), in
        the order of the nodes file."""
        wanted = set(labels)
        return [node for node in self.nodes if wanted <= set(node.labels)]

    def client(self, node: Node | str) -> NodeClient:
        """The pooled client of a node (made on first use)."""
        node = self.node(node) if isinstance(node, str) else node
        client = self._clients.get(node.name)
        if client is None:
            client = NodeClient(
                node.address,
                node.port,
                name=node.name,
                timeouts=self._timeouts,
                expected_uuid=node.uuid,
                tls=node.tls,
                pool=self._pool,
                ssl_context=self._context(node.tls),
            )
            self._clients[node.name] = client
        return client

    @property
    def open_connections(self) -> int:
        """Connections to nodes open now (kept for the next call, or in use)."""
        return self._pool.open_connections

    def _context(self, tls: TLSConfig | None) -> ssl.SSLContext | None:
        """One TLS context per TLS setting: making one reads the files and costs about a
        millisecond, too much to pay per node of a thousand."""
        if tls is None:
            return None
        context = self._contexts.get(tls)
        if context is None:
            context = self._contexts[tls] = tls.client_context()
        return context

    async def call_function(
        self, node: Node | str, fn_name: str, fn_args: dict[str, Any] | None = None,
        timeout: float | None = None, **kwargs: Unpack[CallFunctionKeywords],
    ) -> Any:  # fmt: skip
        """:func:`masterd.call.call_function` on the named node."""
        return await call_function(self.client(node), fn_name, fn_args, timeout, **kwargs)

    def call_many(
        self, fn_name: str, fn_args: dict[str, Any] | None = None, timeout: float | None = None,
        *, nodes: Iterable[Node | str] | None = None, **kwargs: Unpack[CallManyKeywords],
    ) -> AsyncGenerator[NodeResult, None]:  # fmt: skip
        """:func:`masterd.fanout.call_many` on these nodes (default: all of them)."""
        return call_many(self._clients_of(nodes), fn_name, fn_args, timeout, **kwargs)

    async def gather(
        self, fn_name: str, fn_args: dict[str, Any] | None = None, timeout: float | None = None,
        *, nodes: Iterable[Node | str] | None = None, **kwargs: Unpack[CallManyKeywords],
    ) -> GatherSummary:  # fmt: skip
        """:func:`masterd.fanout.gather` on these nodes (default: all of them)."""
        return await gather(self._clients_of(nodes), fn_name, fn_args, timeout, **kwargs)

    def resume(
        self, batch_file: Path | str, **kwargs: Unpack[ResumeKeywords]
    ) -> AsyncGenerator[NodeResult, None]:
        """:func:`masterd.fanout.resume`: go on with a fan-out whose master died."""
        return resume(batch_file, [self.client(node) for node in self.nodes], **kwargs)

    def _clients_of(self, nodes: Iterable[Node | str] | None) -> list[NodeClient]:
        return [self.client(node) for node in (self.nodes if nodes is None else nodes)]

    async def close(self) -> None:
        """Close every pooled connection."""
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.close()
        await self._pool.close()

    async def __aenter__(self) -> Cluster:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        await self.close()
