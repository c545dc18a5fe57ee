"""The node interface: how the controller reaches one node (docs/nodes-interface.md).

- :mod:`.interface` — the :class:`~.interface.NodeClient` protocol and the wire codecs of its
  requests and results;
- :mod:`.local` — this node, in-process (the runtime, the network code, task files);
- :mod:`.service` — the agent methods (``node.*``) that serve a local node to a remote manager;
- :mod:`.remote` — a node reached over the agent protocol (a unix socket or SSH).
"""
