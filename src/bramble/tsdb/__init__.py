"""A small time-series store's parts: the block codec (`codec`), pure and without I/O."""
