"""``stackctl image build``: pure Dockerfile parsing (dockerfile, words, metadata,
dockerignore) and the builder that runs it against the store (builder, copy, cache)."""
