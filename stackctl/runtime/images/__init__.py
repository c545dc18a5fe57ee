"""The image store and its sources: load/save/import archives, Dockerfile builds.

See docs/images.md. The container manager needs only
``stackctl.runtime.images.store.ImageStore`` (``resolve``, ``list``, ``remove``...) and
``Image.layer_dirs()``. Nothing heavy is imported here.
"""
