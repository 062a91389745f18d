"""One file per method family."""
