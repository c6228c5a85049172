"""What callers may touch: the folders they may name (confinement) and how uploads are stored."""
