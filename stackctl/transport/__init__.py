"""How bytes reach a node's agent (docs/transport.md): the sans-IO protocol (``protocol``), the
unix socket (``unix``), SSH for the manager (``ssh``: asyncssh in its own asyncio thread) and
for the CLI (``openssh``), ``stackctl agent dial-stdio`` on the node (``dial``), the async
client (``aclient``), targets and options (``target``), errors (``errors``)."""
