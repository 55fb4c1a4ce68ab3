"""Pure-torch helpers shared by several art_ext modules."""
