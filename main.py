#!/usr/bin/env python3
"""Start the Fogmachine server in the foreground: ``python main.py [--config FILE]``."""

import sys

from fogmachine.cli import main

if __name__ == "__main__":
    argv = sys.argv[1:]
    global_opts = []
    while argv and argv[0] in ("--config", "-c", "--log-level"):
        global_opts += argv[:2]
        argv = argv[2:]
    sys.exit(main([*global_opts, "serve", *argv]))
