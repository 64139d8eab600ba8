"""The networks: the paper's ResNets and plain nets, VGG-16, the C4 and fc6/fc7 heads, FPN,
the fast path, and the record of a built network."""
