"""The registry client: pull and push images with the OCI distribution protocol.

Modules: :mod:`.reference` (Docker's reference rules, pure), :mod:`.auth` (challenges, tokens,
credential files and helpers), :mod:`.config` (which registries may use plain HTTP, CA
certificates), :mod:`.client` (HTTP through httpx: retries, auth, errors), :mod:`.pull`,
:mod:`.push`, :mod:`.progress` (Docker's output shapes), :mod:`.policy` (``pull_policy``:
``should_pull`` and ``ensure_image`` for the controller). See docs/registry.md.

Blocking code with threads for parallel layers: the CLI uses it directly, the agent's trio code
calls :func:`.policy.ensure_image` through ``trio.to_thread.run_sync``.
"""
