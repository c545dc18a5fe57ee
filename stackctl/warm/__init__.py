"""The warm path: a resident process that runs `stackctl` commands forked from a warm interpreter (see docs/warm.md)."""
