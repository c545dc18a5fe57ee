"""The controller: applies plans to a node and keeps stacks healed (docs/controller.md)."""
