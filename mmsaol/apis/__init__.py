"""Python entries of the command-line tools."""
