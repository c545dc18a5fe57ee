"""stackctl.net: container networking on one host — bridge networks, veth endpoints, IPAM,
published ports (nftables DNAT), service VIPs, the embedded DNS server, and cleanup.

The public API (see docs/networking.md):

- networks:  :mod:`stackctl.net.networks` — ``create``, ``get``, ``list_networks``, ``remove``,
  ``prune``, ``inspect``, ``reapply``
- containers: :mod:`stackctl.net.sandbox` — ``setup_container`` -> ``NetworkSetup``
  (``.spec_network`` = ``"netns:<path>"`` for ``ContainerSpec.network``), ``teardown_container``,
  ``set_health``; ``Attachment`` describes one network of a container
- DNS: :mod:`stackctl.net.dnsserver` — ``serve`` / ``start_in_thread``
- leftovers: :mod:`stackctl.net.gc` — ``gc_stale``

Pure cores, tested without root: ``ipam``, ``ports`` (parsing/resolving), ``dns`` (wire format),
``names`` (what a name means), ``firewall.render``, ``model``.
"""
