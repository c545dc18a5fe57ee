"""Many nodes: the inventory (which nodes, reached how), the way to the manager, and
`node bootstrap` (installing stackctl on a node over SSH). See docs/nodes.md."""
