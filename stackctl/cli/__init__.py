"""The command line. Thin: parse arguments, call the library, print results."""
